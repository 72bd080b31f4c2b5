"""uvicorn's h11 protocol, with a reply's status line and headers sent in one write with its body.

uvicorn writes a response's head and its body in two ``transport.write`` calls, so a small reply
(an MLflow ``log_metric``'s ``{}``) leaves in two segments (TCP_NODELAY is on: server/app.py) and
its client reads twice. Here each request's cycle writes through ``_JoinedWrites``: a write is
held while nothing is, the next one goes out together with it at once, and whatever is still held
goes out at the event loop's next turn. So a head and a body sent together (every plain
``Response``) leave as one write, and a stream's head or chunk (server-sent events, a file) waits
one loop turn at most. Websockets are untouched: the upgrade hands uvicorn's own transport to
the websocket protocol, never a cycle's.
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class _JoinedWrites:
    """A request cycle's view of the connection's transport (the rest passes through)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held = b""
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._held = bytes(data)
            self._flush = self._loop.call_soon(self.flush)
            return
        held, self._held = self._held, b""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._transport.write(held + data)

    def flush(self) -> None:
        held, self._held, self._flush = self._held, b"", None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteH11Protocol(H11Protocol):
    """``uvicorn.Config(http=...)``: each new request's cycle writes through ``_JoinedWrites``."""

    def handle_events(self) -> None:
        super().handle_events()
        # a request read in this call has its cycle made, and its task not yet started
        cycle = self.cycle
        if cycle is not None and not cycle.response_started and not isinstance(cycle.transport, _JoinedWrites):
            cycle.transport = _JoinedWrites(cycle.transport, self.loop)  # type: ignore[assignment]
