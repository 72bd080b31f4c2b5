"""Which job events reach a user, and by which channels: the choices kept in ``users.notify``.

Nomenclature: an *event* is one of ``JOB_EVENTS`` (``started`` is a job going
RUNNING; the others are its final states); a *channel* is how the user hears
of it: a ``notice`` (the bell of the web UI, ``modelyard notices``), an
``email`` (MODELYARD_SMTP_URL) or a ``webhook`` (the job's own webhooks).

The stored JSON keeps only what the user chose; every event they did not
choose for takes the defaults, so a default changed later reaches them.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.spec import END_EVENTS, JOB_EVENTS
from modelyard.jobs.states import JobState

CHANNELS = ("notice", "email", "webhook")
Choices = dict[str, tuple[str, ...]]
# the job state each event is the arrival in
EVENT_OF_STATE: dict[JobState, str] = {
    JobState.RUNNING: "started", JobState.SUCCEEDED: "succeeded", JobState.FAILED: "failed",
    JobState.STOPPED: "stopped", JobState.TIMED_OUT: "timed_out", JobState.LOST: "lost",
}
# the endings a person wants to hear of without looking: something went wrong
EMAIL_EVENTS = ("failed", "timed_out", "lost")
MAX_EMAIL = 320
# one address, no display name: what RFC 5321 lets through, kept simple (no spaces, no brackets)
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.?)*[A-Za-z0-9]")


def defaults() -> Choices:
    """Notice and webhook at every end, email where it went wrong (sent only to a user with an email)."""
    return {e: tuple(c for c in CHANNELS if e in END_EVENTS and (c != "email" or e in EMAIL_EVENTS))
            for e in JOB_EVENTS}


def parse(stored: str | None) -> dict[str, tuple[str, ...]]:
    """The user's own choices as stored (events they never chose for are absent); bad JSON: none."""
    try:
        raw = orjson.loads(stored) if stored else {}
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {e: tuple(c for c in CHANNELS if c in v) for e, v in raw.items() if e in JOB_EVENTS and isinstance(v, list)}


def effective(stored: str | None) -> Choices:
    return {**defaults(), **parse(stored)}


def channels(stored: str | None, event: str) -> tuple[str, ...]:
    return effective(stored).get(event, ())


def check_event(event: str) -> str:
    if event not in JOB_EVENTS:
        raise ModelyardError(ErrorCode.INVALID, f"unknown event {event[:50]!r}: use one of {', '.join(JOB_EVENTS)}",
                             field="event")
    return event


def check_channels(names: list[str] | tuple[str, ...], *, event: str = "") -> tuple[str, ...]:
    bad = [c for c in names if c not in CHANNELS]
    if bad:
        raise ModelyardError(ErrorCode.INVALID, f"unknown channel {bad[0][:50]!r}{f' for {event}' if event else ''}: "
                             f"use {', '.join(CHANNELS)} (or none)", field="notify")
    return tuple(c for c in CHANNELS if c in names)  # their order, once each


def merged(stored: str | None, changes: Mapping[str, list[str] | tuple[str, ...]]) -> str:
    """The stored JSON with ``changes`` (event -> channels) applied; each is checked."""
    mine = {e: list(v) for e, v in parse(stored).items()}
    for event, names in changes.items():
        mine[check_event(event)] = list(check_channels(names, event=event))
    return orjson.dumps(mine).decode()


def check_email(address: str | None) -> str | None:
    """An address as stored: trimmed; empty means none."""
    address = (address or "").strip()
    if not address:
        return None
    if len(address) > MAX_EMAIL or not _EMAIL.fullmatch(address):
        raise ModelyardError(ErrorCode.INVALID, f"not an email address: {address[:100]!r}", field="email")
    return address
