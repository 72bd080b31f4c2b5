"""Delivery of spooled batches to the server: one in flight, retried until acknowledged.

This module owns the HTTP side of docs/protocol.md "Reports": connection
errors, 5xx, 408 and 429 are retried with capped exponential backoff (tenacity)
for as long as the attempt lives; after a connection failure the optional
``server_file`` is re-read so a server restarted on another port is found.
Another 4xx drops the batch with a note on stderr. A ``{"stop": true}`` reply
is handed to ``on_stop``. The thread ends once the final batch is acknowledged,
or when the final batch has waited past ``final_deadline``.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import tenacity

from modelyard.supervisor.batch import Batcher

_RETRY_STATUS = frozenset({408, 429})


class _Retry(Exception):
    """A delivery failure worth retrying."""


class Reporter:
    def __init__(
        self,
        batcher: Batcher,
        *,
        server_url: str,
        attempt_id: str,
        token: str,
        heartbeat_interval: float = 2.0,
        max_backoff: float = 5.0,
        final_deadline: float = 3600.0,
        server_file: Path | None = None,
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.batcher = batcher
        self.server_url = server_url.rstrip("/")
        self.attempt_id = attempt_id
        self.heartbeat_interval = heartbeat_interval
        self.max_backoff = max_backoff
        self.final_deadline = final_deadline
        self.server_file = server_file
        self.on_stop = on_stop
        self.done = threading.Event()  # set when the thread ends
        self.delivered = False  # the final batch was acknowledged
        self._final_since: float | None = None
        self._client = httpx.Client(
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
            timeout=httpx.Timeout(30.0, connect=5.0),
        )
        self._thread = threading.Thread(target=self._run, name="modelyard-reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the final batch to be acknowledged (or given up on)."""
        self.done.wait(timeout)
        return self.delivered

    def _run(self) -> None:
        try:
            while not self._step():
                pass
        except Exception as e:  # the loop boundary: report, never die silently
            print(f"modelyard supervisor: reporter stopped: {e!r}", file=sys.stderr)
        finally:
            self._client.close()
            self.done.set()

    def _step(self) -> bool:
        """Send what is due; True when there is nothing left to do ever."""
        self.batcher.cut_if_due(self.heartbeat_interval)
        seq = self.batcher.oldest()
        if seq is None:
            self.batcher.cut_event.wait(self.batcher.interval / 4)
            self.batcher.cut_event.clear()
            return False
        if self.batcher.final_cut and self._final_since is None:
            self._final_since = time.monotonic()
        if not self._send(seq, self.batcher.path(seq).read_bytes()):
            return True  # gave up past the final deadline
        if self.batcher.acknowledged(seq):
            self.delivered = True
            return True
        return False

    def _send(self, seq: int, body: bytes) -> bool:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retry),
            wait=tenacity.wait_exponential_jitter(initial=0.05, max=self.max_backoff),
            stop=self._past_deadline,
            before_sleep=lambda _state: self._rediscover(),
            reraise=True,
        )
        try:
            retrying(self._post, seq, body)
        except _Retry as e:
            print(f"modelyard supervisor: gave up delivering batch {seq} after "
                  f"{self.final_deadline:.0f}s: {e}", file=sys.stderr)
            return False
        return True

    def _past_deadline(self, _state: tenacity.RetryCallState) -> bool:
        # Before the final batch is cut the job is still running: retry forever.
        if self._final_since is None and self.batcher.final_cut:
            self._final_since = time.monotonic()
        return self._final_since is not None and time.monotonic() - self._final_since > self.final_deadline

    def _post(self, seq: int, body: bytes) -> None:
        url = f"{self.server_url}/api/v1/attempts/{self.attempt_id}/report"
        try:
            resp = self._client.post(url, content=body)
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as e:
            # our own request is malformed (bad URL or header): no retry can fix it
            print(f"modelyard supervisor: cannot send batch {seq} to {url}: {e}; dropped", file=sys.stderr)
            return
        except httpx.TransportError as e:
            raise _Retry(f"{type(e).__name__}: {e}") from None
        if resp.status_code >= 500 or resp.status_code in _RETRY_STATUS:
            raise _Retry(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            print(f"modelyard supervisor: server refused batch {seq} (HTTP {resp.status_code}): "
                  f"{resp.text[:500]}; dropped", file=sys.stderr)
            return
        self._handle_reply(resp.content)

    def _handle_reply(self, content: bytes) -> None:
        try:
            reply = orjson.loads(content) if content else {}
        except orjson.JSONDecodeError:
            return
        if isinstance(reply, dict) and reply.get("stop"):
            self.on_stop()

    def _rediscover(self) -> None:
        """Pick up a restarted server's URL from ``server_file``, if there is one."""
        if self.server_file is None:
            return
        try:
            url = orjson.loads(self.server_file.read_bytes()).get("url")
        except (OSError, orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(url, str) and url:
            self.server_url = url.rstrip("/")
