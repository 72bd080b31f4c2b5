"""Email over SMTP: ``MODELYARD_SMTP_URL`` parsed once, and a sender on its own thread.

The URL says everything about the server::

    smtp://USER:PASSWORD@HOST:PORT?from=ADDR     STARTTLS when the server offers it (port 25 by default)
    smtps://USER:PASSWORD@HOST:PORT?from=ADDR    TLS from the first byte (port 465 by default)

``cafile=PATH`` trusts a private CA besides the system's. Credentials in the
userinfo are percent-encoded (``%40`` for ``@``); without them no AUTH is sent.
Credentials are never sent over a connection that is not encrypted: a server
that offers no STARTTLS gets no AUTH (the message goes unauthenticated, and
fails if the server needs it).

Messages queue to one background thread (started with the first), so a slow
or absent mail server never holds up a state change. Each is retried with
exponential backoff on connection errors and 4xx answers (tenacity); one
that still fails is logged at error level with its recipient and subject.
"""
from __future__ import annotations

import logging
import queue
import smtplib
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from modelyard.errors import ErrorCode, ModelyardError

log = logging.getLogger("modelyard.mail")
FIELD = "MODELYARD_SMTP_URL"


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool  # smtps://
    sender: str  # the From address
    username: str | None = None
    password: str | None = None
    cafile: str | None = None

    def __repr__(self) -> str:  # never the password, in a log or a traceback
        return f"SmtpServer({'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port})"


def parse_smtp_url(url: str) -> SmtpServer:
    """``MODELYARD_SMTP_URL`` as a server; a clear error naming what is wrong otherwise."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ModelyardError(ErrorCode.INVALID, f"not a URL: {exc}", field=FIELD) from None
    if parts.scheme not in ("smtp", "smtps") or not host:
        raise ModelyardError(ErrorCode.INVALID, "use smtp://HOST:PORT or smtps://HOST:PORT (with ?from=ADDR)",
                             field=FIELD)
    query = parse_qs(parts.query)
    unknown = set(query) - {"from", "cafile"}
    if unknown:
        raise ModelyardError(ErrorCode.INVALID, f"unknown parameter {sorted(unknown)[0]!r} (use from, cafile)",
                             field=FIELD)
    sender = (query.get("from") or [""])[0]
    if "@" not in sender:
        raise ModelyardError(ErrorCode.INVALID, "say who the emails are from: ?from=ADDR", field=FIELD)
    implicit = parts.scheme == "smtps"
    return SmtpServer(host=host, port=port or (465 if implicit else 25), implicit_tls=implicit, sender=sender,
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password is not None else None,
                      cafile=(query.get("cafile") or [None])[0])


class _Transient(Exception):
    """A 4xx answer: the server asks to be tried again later."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, (_Transient, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return True
    # every SMTPException is an OSError: a refused login or address is final, a network error is not
    return isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException) and not isinstance(exc, ssl.SSLCertVerificationError)


class Mailer:
    def __init__(self, server: SmtpServer, *, attempts: int = 5, max_wait: float = 30.0,
                 timeout: float = 15.0) -> None:
        self.server = server
        self._attempts, self._max_wait, self._timeout = attempts, max_wait, timeout
        self._queue: queue.Queue[EmailMessage | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def message(self, to: str, subject: str, body: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.server.sender, to, subject
        msg.set_content(body)
        return msg

    def send(self, msg: EmailMessage) -> None:
        with self._lock:
            if self._closed:
                log.error("email to %s not sent (%s): the server is shutting down", msg["To"], msg["Subject"])
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="modelyard-mail", daemon=True)
                self._thread.start()
            self._queue.put(msg)

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.server.cafile:
            context.load_verify_locations(self.server.cafile)
        return context

    def deliver(self, msg: EmailMessage) -> None:
        """One try, now, on this thread."""
        s = self.server
        if s.implicit_tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=self._timeout, context=self._context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=self._timeout)
        with smtp:
            smtp.ehlo()
            encrypted = s.implicit_tls
            if not encrypted and smtp.has_extn("starttls"):
                smtp.starttls(context=self._context())
                smtp.ehlo()
                encrypted = True
            if s.username is not None and encrypted:
                smtp.login(s.username, s.password or "")
            try:
                smtp.send_message(msg)
            except smtplib.SMTPResponseException as exc:
                if 400 <= exc.smtp_code < 500:
                    raise _Transient(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
                raise
            except smtplib.SMTPRecipientsRefused as exc:
                if all(400 <= code < 500 for code, _ in exc.recipients.values()):
                    raise _Transient(str(exc.recipients)) from exc
                raise

    def _run(self) -> None:
        from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

        deliver = retry(
            retry=retry_if_exception(_retryable), stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.5, max=self._max_wait), reraise=True,
        )(self.deliver)
        while (msg := self._queue.get()) is not None:
            try:
                deliver(msg)
                self.sent += 1
            except Exception as exc:  # loop boundary: one bad message must not stop the others
                self.failed += 1
                log.error("email to %s (%s) not sent via %r: %s", msg["To"], msg["Subject"], self.server, exc)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
