"""Webhooks: a JSON POST to each configured URL when a job reaches a final state.

Deliveries run on one background thread so a slow receiver never holds up a
report or the scheduler. Each is retried with exponential backoff (tenacity)
on connection errors and 5xx answers; a 4xx answer is final.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

log = logging.getLogger("modelyard.webhooks")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code in (408, 429)
    return isinstance(exc, httpx.TransportError)


class WebhookSender:
    def __init__(self, *, attempts: int = 6, max_wait: float = 30.0, timeout: float = 10.0) -> None:
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._client = httpx.Client(timeout=timeout, headers={"User-Agent": "modelyard-webhook"})
        self._post = retry(
            retry=retry_if_exception(_retryable), stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, max=max_wait), reraise=True,
        )(self._post_once)
        self._thread = threading.Thread(target=self._run, name="modelyard-webhooks", daemon=True)
        self._thread.start()

    def send(self, urls: list[str] | tuple[str, ...], payload: dict[str, Any]) -> None:
        for url in dict.fromkeys(urls):  # a URL configured twice gets one POST
            self._queue.put((url, payload))

    def _post_once(self, url: str, payload: dict[str, Any]) -> None:
        self._client.post(url, json=payload).raise_for_status()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            url, payload = item
            try:
                self._post(url, payload)
            except Exception as exc:  # loop boundary: one bad receiver must not stop the others
                log.warning("webhook %s for job %s failed: %s", url, payload.get("job", {}).get("id"), exc)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        self._client.close()
