"""Delivery of spooled batches to the server: one in flight, retried until acknowledged.

This module owns the HTTP side of docs/protocol.md "Reports": connection
errors, 5xx, 408 and 429 are retried with capped exponential backoff (tenacity)
for as long as the attempt lives; after a connection failure the optional
``server_file`` is re-read so a server restarted on another port is found.
The server takes only the batch one past the last it stored: a 409 naming an
``expected_seq`` below the batch's means it lacks batches no longer spooled
(acknowledged, then lost with a restored database), which are filled with empty
ones so that nothing is reordered. Another 4xx refuses the batch's content: it
is sent once more stripped to its number, events and a note (so the sequence
has no hole and the job's end still arrives), and a refusal of that, like a
410 (the attempt has ended or was declared lost), is final: ``on_gone`` is
called and the thread ends, never spinning on a batch that cannot go. A
``{"stop": true}`` reply is handed to ``on_stop``. The thread ends once the
final batch is acknowledged, or when the final batch has waited past
``final_deadline``. A 503 ``disk_full`` (the server could not store the
batch) is retried like any 5xx, and ``on_disk_full`` is told. No retry waits
longer than a heartbeat interval: every retry reaches the server, which counts
it as contact even when it cannot store the batch (scheduler/contact.py).

The transport is the standard library's ``http.client`` on one kept-alive
connection (with TCP_NODELAY, so no report waits on Nagle / delayed ACK): httpx
costs the supervisor ~0.2 s of imports on every job start, and a supervisor
sends one small POST at a time.
"""
from __future__ import annotations

import http.client
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import tenacity

from modelyard.supervisor.batch import Batcher

_RETRY_STATUS = frozenset({408, 429})


MAX_REFUSALS = 3  # of one batch, before the server's refusal is taken as final


class _Retry(Exception):
    """A delivery failure worth retrying."""


class _Refused(Exception):
    """The server answered 4xx: retrying the same body cannot help."""

    def __init__(self, status: int, content: bytes) -> None:
        self.status = status
        self.text = content[:500].decode("utf-8", "replace")
        super().__init__(f"HTTP {status}: {self.text}")

    @property
    def expected_seq(self) -> int | None:
        if self.status != 409:
            return None
        try:
            expected = orjson.loads(self.text).get("expected_seq")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return expected if isinstance(expected, int) and expected >= 1 else None


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
        on_gone: Callable[[str], None] = lambda _message: None,
        on_disk_full: Callable[[], None] = lambda: None,
    ) -> None:
        self.batcher = batcher
        self.server_url = server_url.rstrip("/")
        self.attempt_id = attempt_id
        self.heartbeat_interval = heartbeat_interval
        self.max_backoff = max_backoff
        self.final_deadline = final_deadline
        self.server_file = server_file
        self.on_stop = on_stop
        self.on_gone = on_gone
        self.on_disk_full = on_disk_full
        self.refused: str | None = None  # why the server will take no more reports, once it said so
        self.done = threading.Event()  # set when the thread ends
        self.delivered = False  # the final batch was acknowledged
        self._final_since: float | None = None
        self._nudged = threading.Event()  # cuts a retry's wait short: space was just freed
        self._headers = {"Content-Type": "application/json",
                         **({"Authorization": f"Bearer {token}"} if token else {})}
        self._conn: http.client.HTTPConnection | None = None
        self._conn_url = ""
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
            self._disconnect()
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
        if not self._deliver(seq):
            return True  # gave up past the final deadline, or the server takes no more
        if self.batcher.acknowledged(seq):
            self.delivered = True
            return True
        return False

    def _deliver(self, seq: int) -> bool:
        """Send spooled batch ``seq`` until acknowledged; False when it never will be."""
        body = self.batcher.body(seq)
        for _ in range(MAX_REFUSALS):
            try:
                return self._send(seq, body)
            except _Refused as r:
                if r.status == 410:
                    return self._gone(f"the server takes no more reports for this attempt: {r.text}")
                expected = r.expected_seq
                if expected is not None and expected < seq:
                    if not self._fill(expected, seq):
                        return False
                    continue
                print(f"modelyard supervisor: server refused batch {seq} ({r}); "
                      "sending it stripped to its events", file=sys.stderr)
                body = self.batcher.stripped(seq, f"batch {seq} was refused by the server ({r}); its lines, "
                                                  "metrics and samples are lost")
        return self._gone(f"the server refused batch {seq} {MAX_REFUSALS} times")

    def _fill(self, start: int, end: int) -> bool:
        """Empty batches ``start`` .. ``end - 1``, for numbers the server lacks and the spool no longer has."""
        note = f"batches {start} to {end - 1} were acknowledged once but the server no longer has them"
        for n in range(start, end):
            try:
                if not self._send(n, self.batcher.filler(n, note)):
                    return False
            except _Refused as r:
                return self._gone(f"the server refused filler batch {n}: {r}")
        return True

    def _gone(self, message: str) -> bool:
        print(f"modelyard supervisor: {message}; ending the job", file=sys.stderr)
        self.refused = message
        self.on_gone(message)
        return False

    def _send(self, seq: int, body: bytes) -> bool:
        """Post until acknowledged (True) or past the final deadline (False); a 4xx raises ``_Refused``."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retry),
            wait=tenacity.wait_exponential_jitter(initial=0.05, max=min(self.max_backoff, self.heartbeat_interval)),
            stop=self._past_deadline,
            before_sleep=lambda _state: self._rediscover(),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            retrying(self._post, seq, body)
        except _Retry as e:
            print(f"modelyard supervisor: gave up delivering batch {seq} after "
                  f"{self.final_deadline:.0f}s: {e}", file=sys.stderr)
            return False
        return True

    def nudge(self) -> None:
        """Retry now rather than after the backoff (the supervisor just freed its reserve)."""
        self._nudged.set()

    def _sleep(self, seconds: float) -> None:
        self._nudged.wait(seconds)
        self._nudged.clear()

    def _past_deadline(self, _state: tenacity.RetryCallState) -> bool:
        # Before the final batch is cut the job is still running: retry forever.
        if self._final_since is None and self.batcher.final_cut:
            self._final_since = time.monotonic()
        return self._final_since is not None and time.monotonic() - self._final_since > self.final_deadline

    def _post(self, seq: int, body: bytes) -> None:
        url = f"{self.server_url}/api/v1/attempts/{self.attempt_id}/report"
        try:
            conn, path = self._connection(url)
        except ValueError as e:
            # our own request is malformed (a bad URL): no retry can fix it
            raise _Refused(0, f"cannot send batch {seq} to {url}: {e}".encode()) from None
        try:
            conn.request("POST", path, body=body, headers=self._headers)
            resp = conn.getresponse()
            status, content = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:
            self._disconnect()  # a half-used connection cannot be trusted with the next request
            raise _Retry(f"{type(e).__name__}: {e}") from None
        if resp.will_close:
            self._disconnect()
        if status >= 500 or status in _RETRY_STATUS:
            if status == 503 and b'"disk_full"' in content:
                self.on_disk_full()
            raise _Retry(f"HTTP {status}")
        if status >= 400:
            raise _Refused(status, content)
        self._handle_reply(content)

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        """The kept-alive connection to ``url``'s server (a new one if the server moved), and the path."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        origin = f"{parts.scheme}://{parts.netloc}"
        if self._conn is None or self._conn_url != origin:
            self._disconnect()
            cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(parts.hostname, parts.port, timeout=30.0)
            self._conn_url = origin
        return self._conn, parts.path + (f"?{parts.query}" if parts.query else "")

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

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
