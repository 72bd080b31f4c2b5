"""Webhooks: a signed JSON POST to each configured URL when a job reaches a final state.

Deliveries run on one background thread so a slow receiver never holds up a
report or the scheduler. Each is retried with exponential backoff (tenacity)
on connection errors and 5xx answers; a 4xx answer is final.

Each POST carries ``X-Modelyard-Signature: sha256=HEX``, the HMAC-SHA256 of
its exact body with a secret the receiver also knows (the job owner's webhook
secret), so a receiver can tell the server's POSTs from anyone else's.

A job's own webhooks are requests its owner makes the server send: each try
resolves the host, checks every address (``destinations.py``) and connects to
the checked address itself (the Host header and TLS name stay the URL's), so
a name rebound to 127.0.0.1 after the check reaches nothing. No proxy from
the environment and no redirects are followed: both would send the request
somewhere unchecked. The admin's server-wide webhooks are not checked.

The thread, httpx and tenacity start with the first delivery: httpx's import
pulls in rich and click (~0.1 s), which a server start should not pay for
webhooks it may never send.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.destinations import Network, RefusedDestination, checked_addresses

log = logging.getLogger("modelyard.webhooks")
SIGNATURE_HEADER = "X-Modelyard-Signature"


def signature(secret: str, body: bytes) -> str:
    """The header's value for ``body``: what a receiver recomputes with the same secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    url: str
    body: bytes
    secret: str | None  # None: unsigned (a server-wide webhook with no MODELYARD_WEBHOOK_SECRET)
    checked: bool  # a job's webhook: its address is checked on every try


def _retryable(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code in (408, 429)
    return isinstance(exc, httpx.TransportError)


class WebhookSender:
    def __init__(self, *, allow: tuple[Network, ...] = (), attempts: int = 6, max_wait: float = 30.0,
                 timeout: float = 10.0) -> None:
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._allow = allow
        self._attempts, self._max_wait, self._timeout = attempts, max_wait, timeout
        self._client: Any = None  # an httpx.Client, made by the thread
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    def send(self, urls: Iterable[str], payload: dict[str, Any], *, secret: str | None = None,
             checked: bool = True) -> None:
        """Queue one POST of ``payload`` to each URL (a URL given twice gets one)."""
        body = orjson.dumps(payload)
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="modelyard-webhooks", daemon=True)
                self._thread.start()
            for url in dict.fromkeys(urls):
                self._queue.put(Delivery(url, body, secret, checked))

    def _post_once(self, d: Delivery) -> None:
        import httpx

        headers = {"Content-Type": "application/json"}
        if d.secret is not None:
            headers[SIGNATURE_HEADER] = signature(d.secret, d.body)
        url, extensions = httpx.URL(d.url), {}
        if d.checked:
            addresses = checked_addresses(d.url, self._allow)
            if not addresses:
                raise httpx.ConnectError(f"{url.host} does not resolve")
            headers["Host"] = url.netloc.decode("ascii")
            extensions = {"sni_hostname": url.host}  # TLS checks the certificate against the URL's name
            url = url.copy_with(host=str(addresses[0]))
        self._client.post(url, content=d.body, headers=headers, extensions=extensions).raise_for_status()

    def _run(self) -> None:
        import httpx
        from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

        self._client = httpx.Client(timeout=self._timeout, headers={"User-Agent": "modelyard-webhook"},
                                    trust_env=False, follow_redirects=False)
        post = retry(
            retry=retry_if_exception(_retryable), stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=self._max_wait), reraise=True,
        )(self._post_once)
        while (item := self._queue.get()) is not None:
            try:
                post(item)
            except RefusedDestination as exc:
                log.warning("webhook refused at send time: %s", exc.message)
            except Exception as exc:  # loop boundary: one bad receiver must not stop the others
                log.warning("webhook %s failed: %s", item.url, exc)

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
