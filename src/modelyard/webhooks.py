"""Webhooks: a JSON POST to each configured URL when a job reaches a final state.

Deliveries run on one background thread so a slow receiver never holds up a
report or the scheduler. Each is retried with exponential backoff (tenacity)
on connection errors and 5xx answers; a 4xx answer is final.

The thread, httpx and tenacity start with the first delivery: httpx's import
pulls in rich and click (~0.1 s), which a server start should not pay for
webhooks it may never send.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any

log = logging.getLogger("modelyard.webhooks")


def _retryable(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code in (408, 429)
    return isinstance(exc, httpx.TransportError)


class WebhookSender:
    def __init__(self, *, attempts: int = 6, max_wait: float = 30.0, timeout: float = 10.0) -> None:
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._attempts, self._max_wait, self._timeout = attempts, max_wait, timeout
        self._client: Any = None  # an httpx.Client, made by the thread
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    def send(self, urls: list[str] | tuple[str, ...], payload: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="modelyard-webhooks", daemon=True)
                self._thread.start()
            for url in dict.fromkeys(urls):  # a URL configured twice gets one POST
                self._queue.put((url, payload))

    def _post_once(self, url: str, payload: dict[str, Any]) -> None:
        self._client.post(url, json=payload).raise_for_status()

    def _run(self) -> None:
        import httpx
        from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

        self._client = httpx.Client(timeout=self._timeout, headers={"User-Agent": "modelyard-webhook"})
        post = retry(
            retry=retry_if_exception(_retryable), stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=self._max_wait), reraise=True,
        )(self._post_once)
        while (item := self._queue.get()) is not None:
            url, payload = item
            try:
                post(url, payload)
            except Exception as exc:  # loop boundary: one bad receiver must not stop the others
                log.warning("webhook %s for job %s failed: %s", url, payload.get("job", {}).get("id"), exc)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:  # nothing was ever sent
            return
        self._queue.put(None)
        thread.join(timeout)
        if self._client is not None:
            self._client.close()
