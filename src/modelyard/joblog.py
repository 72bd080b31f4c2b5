"""Reading a job's log through the client, shared by the CLI and the SDK: the lines stored so far,
or following live until the attempt (or the whole job, every retry and restart included) ends.

A *line* is the API's log line object ``{"n", "t", "stream", "text", "node"}``.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from modelyard.client import Client, ClientError, is_final

PAGE = 1000
RECONNECTS = 5
POLL_INTERVAL = 0.5


class LogLines:
    """Iterate an attempt's lines (of node rank ``node`` only, if given); ``follow``: until it ends,
    reconnecting a dropped stream; ``every_attempt`` (with ``follow``): then each later attempt's,
    until the job ends, whose final JOB is then ``job``.

    With no ``attempt``, the latest; for a job not placed yet, the first one to start. Following every
    attempt of a job queued again (a restart, a retry), from its next one: the ended attempt is
    history, not what is happening. While iterating, ``attempt`` is the attempt being read and
    ``nodes`` its node count."""

    def __init__(self, client: Client, job_id: int, *, attempt: int | None = None, node: int | None = None,
                 follow: bool = False, every_attempt: bool = False) -> None:
        self.client, self.job_id, self.attempt, self.node = client, job_id, attempt, node
        self.follow, self.every_attempt = follow, every_attempt
        self.nodes = 1
        self.job: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not (self.follow and self.every_attempt):
            yield from self._attempt(self.attempt)
            return
        job = self.client.get_job(self.job_id) if self.attempt is None else None
        if job is not None and job["state"] == "queued" and job["attempt"]:
            self.attempt = job["attempt"]  # the loop below waits for the next one
        else:
            yield from self._attempt(self.attempt)
        while True:
            job = self.client.get_job(self.job_id)
            if is_final(job):
                self.job = job
                return
            if self.attempt is None or job["attempt"] > self.attempt:
                yield from self._attempt(job["attempt"])
            else:
                # The attempt ended and the job's next state (retry or final) is not stored yet.
                time.sleep(POLL_INTERVAL)

    def _attempt(self, attempt: int | None) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self.client.job_logs(self.job_id, attempt=attempt, offset=offset, limit=PAGE, node=self.node)
            self.attempt, self.nodes = page["attempt"], page.get("nodes", 1)
            attempt = self.attempt
            yield from page["lines"]
            if page["done"] or not page["lines"] or page["next_offset"] <= offset:
                break
            offset = page["next_offset"]
        if self.follow and not page["done"]:
            yield from self._stream(offset)

    def _stream(self, offset: int) -> Iterator[dict[str, Any]]:
        failures = 0
        while True:
            try:
                for event in self.client.stream_logs(self.job_id, attempt=self.attempt, offset=offset, node=self.node):
                    if event.event == "line":
                        yield event.data
                        offset = event.data["n"] + 1
                        failures = 0
                    elif event.event == "end":
                        # A job queued when we started has its attempt number only now.
                        self.attempt = (event.data or {}).get("attempt") or self.attempt
                        return
            except ClientError as e:
                failures += 1
                if e.status is not None or failures > RECONNECTS:
                    raise
                time.sleep(min(2.0, 0.2 * 2**failures))
