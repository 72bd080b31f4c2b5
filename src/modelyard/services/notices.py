"""Notices, email and webhooks per job event: what a user hears of their jobs, and how.

The notice row is written with the state change itself (``db/notices.record``).
Everything that leaves the server goes through ``Dispatcher``: after a change
is committed its caller hands over ``(job, event)`` (a queue put, nothing
more), and the dispatcher's thread reads the job, decides from the owner's
choices (``jobs/notify.py``) and the job's ``webhook_events``, and hands the
email to the ``Mailer`` and the webhooks to the ``WebhookSender``, each on its
own thread with its own retries.

The functions below the dispatcher are the users' own view: their notices,
their email and choices. Routes and pages both call them.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelyard.db import jobs as store_jobs
from modelyard.db import notices as store
from modelyard.db import reports
from modelyard.db.engine import Database
from modelyard.db.records import Attempt, Job, User
from modelyard.db.users import get_user_by_name, webhook_secret
from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.jobs import notify
from modelyard.jobs.spec import JOB_EVENTS
from modelyard.jobs.states import JobState
from modelyard.jobs.units import format_duration
from modelyard.mail import Mailer
from modelyard.webhooks import WebhookSender

log = logging.getLogger("modelyard.notices")
LOG_TAIL = 30  # lines of the log a failure's email ends with
STATE_OF_EVENT = {event: state for state, event in notify.EVENT_OF_STATE.items()}
FAILURES = ("failed", "timed_out", "lost")


@dataclass(frozen=True)
class Targets:
    """Where the server-wide webhooks go, and on which events (MODELYARD_WEBHOOKS, _EVENTS, _SECRET)."""
    urls: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    secret: str | None = None


class Dispatcher:
    """Emails and webhooks for job events, decided and sent off the caller's thread."""

    def __init__(self, db: Database, *, webhooks: WebhookSender, mailer: Mailer | None, server_wide: Targets,
                 public_url: Callable[[], str | None], describe: Callable[[Job], dict[str, Any]],
                 read_log: Callable[[Attempt, int, int], reports.LogPage] | None = None) -> None:
        self.db, self.webhooks, self.mailer, self.server_wide = db, webhooks, mailer, server_wide
        self._public_url, self._describe = public_url, describe
        # an ended attempt's lines may have left the db for the artifact store (cleanup_service.read_log)
        self._read_log = read_log or (lambda a, offset, limit: reports.read_logs(self.db, a.id, offset=offset,
                                                                                 limit=limit))
        self._queue: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def job_event(self, job_id: int, event: str) -> None:
        """Job ``job_id`` arrived at ``event`` (committed): tell whom it concerns, later."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="modelyard-notify", daemon=True)
                self._thread.start()
            self._queue.put((job_id, event))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self.handle(*item)
            except Exception:  # loop boundary: one job's trouble must not silence the others'
                log.exception("job %s %s: its emails and webhooks could not be sent", *item)

    def close(self, timeout: float = 5.0) -> None:
        """After the last event is handled (or ``timeout``); then the senders' threads may close."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def handle(self, job_id: int, event: str) -> None:
        try:
            job = store_jobs.get_job(self.db, job_id)
        except ModelyardError:
            return  # removed meanwhile
        profile = store.get_profile(self.db, job.user_id)
        chosen = notify.channels(profile.notify, event)
        self._webhooks(job, event, chosen)
        if "email" in chosen and profile.email and self.mailer is not None:
            subject, body = self.email(job, event)
            self.mailer.send(self.mailer.message(profile.email, subject, body))

    def _webhooks(self, job: Job, event: str, chosen: tuple[str, ...]) -> None:
        own = job.spec.webhooks and (event in job.spec.webhook_events if job.spec.webhook_events
                                     else "webhook" in chosen)
        wide = self.server_wide.urls and event in self.server_wide.events
        if not (own or wide):
            return
        state = STATE_OF_EVENT[event].value
        payload = {"event": "job.started" if event == "started" else "job.ended", "job_event": event,
                   "state": state, "job": self._describe(job)}
        if wide:  # the admin's own: sent where configured, signed with the server's secret
            self.webhooks.send(self.server_wide.urls, payload, secret=self.server_wide.secret, checked=False)
        if own:
            self.webhooks.send(job.spec.webhooks, payload, secret=webhook_secret(self.db, job.user_id))

    def email(self, job: Job, event: str) -> tuple[str, str]:
        """Subject and text of the email of ``event`` of ``job``."""
        title = store.title(job.id, job.name, event)
        state = STATE_OF_EVENT[event]
        lines = [f"{title}.", "", f"State: {state.value}"]
        if job.exit_code is not None and state is not JobState.RUNNING:
            lines.append(f"Exit code: {job.exit_code}")
        if job.message and state is not JobState.RUNNING:
            lines.append(f"Reason: {job.message}")
        if job.started_at is not None:
            end = job.ended_at if state is not JobState.RUNNING else job.started_at
            lines.append(f"Duration: {format_duration((end or job.started_at) - job.started_at)}")
        metrics = reports.final_metrics(self.db, job.id)
        if metrics:
            lines += ["", "Final metrics:"] + [f"  {name} = {value:.6g}" for name, value in metrics.items()]
        base = self._public_url()
        lines += ["", f"Page: {(base or '') + store.job_link(job.id)}"]
        if event in FAILURES:
            tail = self._log_tail(job)
            if tail:
                lines += ["", f"Last {len(tail)} lines of its log:", *tail]
        return f"[modelyard] {title}", "\n".join(lines) + "\n"

    def _log_tail(self, job: Job) -> list[str]:
        attempt = store_jobs.attempt_by_number(self.db, job.id, job.attempt) if job.attempt else None
        if attempt is None:
            return []
        page = self._read_log(attempt, max(0, attempt.log_count - LOG_TAIL), LOG_TAIL)
        return [str(line["text"]) for line in page.lines]


# -- a user's own notices and choices --------------------------------------------------------------


def notice_to_dict(n: store.Notice) -> dict[str, Any]:
    return {"id": n.id, "job_id": n.job_id, "event": n.event, "title": n.title, "body": n.body, "link": n.link,
            "created_at": n.created_at, "read": n.read_at is not None}


def notices_of(db: Database, user: User, *, unread: bool = False, limit: int = 50) -> dict[str, Any]:
    listing = store.list_notices(db, user.id, unread=unread, limit=limit)
    return {"notices": [notice_to_dict(n) for n in listing], "unread": store.unread_count(db, user.id)}


def unread_count(db: Database, user: User) -> int:
    return store.unread_count(db, user.id)


def mark_read(db: Database, user: User, notice_id: int) -> dict[str, Any]:
    return {"notice": notice_to_dict(store.mark_read(db, user.id, notice_id)), "unread": store.unread_count(db, user.id)}


def mark_all_read(db: Database, user: User) -> dict[str, Any]:
    return {"marked": store.mark_all_read(db, user.id), "unread": 0}


def profile_to_dict(p: store.Profile, *, email_enabled: bool) -> dict[str, Any]:
    choices = notify.effective(p.notify)
    return {"name": p.name, "email": p.email, "email_enabled": email_enabled, "events": list(JOB_EVENTS),
            "channels": list(notify.CHANNELS), "notify": {e: list(c) for e, c in choices.items()},
            "chosen": sorted(notify.parse(p.notify))}


def _target(db: Database, user: User, name: str | None) -> int:
    """The user whose profile ``user`` asks about: their own, or (admins only) anyone's."""
    if name is None or name == user.name:
        return user.id
    if not user.is_admin:
        raise ModelyardError(ErrorCode.FORBIDDEN, "only an admin may change another user's profile", field="user")
    other = get_user_by_name(db, name)
    if other is None:
        raise not_found(f"user {name}")
    return other.id


def profile(db: Database, user: User, *, email_enabled: bool, name: str | None = None) -> dict[str, Any]:
    return profile_to_dict(store.get_profile(db, _target(db, user, name)), email_enabled=email_enabled)


UNSET: Any = object()


def update_profile(db: Database, user: User, *, email_enabled: bool, email: str | None = UNSET,
                   notify_changes: dict[str, list[str]] | None = None, name: str | None = None) -> dict[str, Any]:
    """Change the email (None or "": none) and/or choices (event -> channels) of ``user`` or, for an admin,
    of user ``name``. Only an admin sets another's email; choices are the user's own."""
    target = _target(db, user, name)
    if notify_changes and target != user.id:
        raise ModelyardError(ErrorCode.FORBIDDEN, "notification choices are each user's own", field="notify")
    values: dict[str, str | None] = {}
    if email is not UNSET:
        values["email"] = notify.check_email(email)
    if notify_changes:
        values["notify"] = notify.merged(store.get_profile(db, target).notify, notify_changes)
    return profile_to_dict(store.update_profile(db, target, **values), email_enabled=email_enabled)
