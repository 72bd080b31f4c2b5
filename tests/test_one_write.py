"""server/one_write.py: uvicorn's h11 protocol with a reply's head and body in one transport write,
and a stream's head never held back for its first chunk. Driven with a real uvicorn config and a
recording transport (what the socket would have been asked to send, write by write)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from uvicorn.server import ServerState

from modelyard.server.one_write import OneWriteH11Protocol


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def until(what: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0)  # one loop turn: the server's tasks run


def run(app: Any, check: Callable[[OneWriteH11Protocol, Recording], Awaitable[None]]) -> None:
    async def main() -> None:
        config = uvicorn.Config(app, http=OneWriteH11Protocol, log_level="warning", lifespan="off")
        protocol = OneWriteH11Protocol(config, ServerState(), {}, asyncio.get_running_loop())
        transport = Recording()
        protocol.connection_made(transport)
        await check(protocol, transport)
        protocol.connection_lost(None)
    asyncio.run(main())


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def test_a_reply_leaves_in_one_write_and_replies_in_turn_keep_their_order() -> None:
    app = Starlette(routes=[Route("/n/{n}", lambda r: JSONResponse({"n": int(r.path_params["n"])}))])

    async def check(protocol: OneWriteH11Protocol, transport: Recording) -> None:
        protocol.data_received(request("/n/1"))
        await until(lambda: len(transport.writes) == 1 and transport.writes[0].endswith(b'{"n":1}'))
        protocol.data_received(request("/n/2") + request("/n/3"))  # the client's next two, pipelined
        await until(lambda: len(transport.writes) == 3)
        for n, write in enumerate(transport.writes, 1):
            assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b'{"n":%d}' % n), write
        assert not transport.closed
    run(app, check)


def test_a_streams_head_goes_out_before_its_first_chunk_is_made() -> None:
    first = asyncio.Event()

    async def chunks() -> Any:
        await first.wait()
        yield b"data: one\n\n"
        yield b"data: two\n\n"

    app = Starlette(routes=[Route("/events", lambda r: StreamingResponse(chunks(), media_type="text/event-stream"))])

    async def check(protocol: OneWriteH11Protocol, transport: Recording) -> None:
        protocol.data_received(request("/events"))
        await until(lambda: b"".join(transport.writes).startswith(b"HTTP/1.1 200 OK\r\n"))
        assert b"\r\n\r\n" in transport.writes[0] and b"data:" not in b"".join(transport.writes)
        first.set()
        await until(lambda: b"".join(transport.writes).endswith(b"0\r\n\r\n"))
        sent = b"".join(transport.writes)
        assert sent.index(b"data: one") < sent.index(b"data: two")
    run(app, check)
