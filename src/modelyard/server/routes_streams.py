"""Server-sent event streams: a job's log as it grows, and job state changes.

Both poll the store (cheap indexed reads) every ``POLL`` seconds, so they work
the same whichever process wrote the rows; the poll sets the floor of the
log-line-to-screen latency.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from modelyard.errors import ModelyardError
from modelyard.server.api_schema import AUTHED, MAX_ID, AttemptQuery, JobId, NodeQuery, OffsetQuery, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.services.jobs import attempt_of
from modelyard.server.serialize import job_to_dict
from modelyard.db import jobs as store_jobs
from modelyard.db.records import User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]
POLL = 0.05
PING_EVERY = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_RESPONSE = {200: {"description": "server-sent events",
                      "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


@router.get("/jobs/{job_id}/logs/stream", response_class=StreamingResponse,
            responses={**SSE_RESPONSE, **errors(*AUTHED, 404)})
async def log_stream(
    job_id: JobId, request: Request, p: PlatformDep, user: UserDep, attempt: AttemptQuery = None,
    offset: OffsetQuery = 0, node: NodeQuery = None,
) -> StreamingResponse:
    job = await run_in_threadpool(store_jobs.get_job, p.db, job_id, user=user)

    async def events() -> AsyncIterator[bytes]:
        nonlocal offset
        number = attempt
        last_sent = time.monotonic()
        while True:
            current = await run_in_threadpool(store_jobs.get_job, p.db, job_id)
            a = await run_in_threadpool(attempt_of, p, current, number)
            if a is None:  # not placed yet
                if current.state.is_terminal():
                    yield sse("end", {"state": current.state.value})
                    return
            else:
                number = a.number
                page = await run_in_threadpool(p.cleanup.read_log, a, offset=offset, limit=2000, node=node)
                offset = page.next_offset  # past other nodes' lines too, when filtered by node
                if page.lines:
                    yield b"".join(sse("line", {**line, "attempt": number}) for line in page.lines)
                    last_sent = time.monotonic()
                    continue
                if a.state.is_terminal() and offset >= a.log_count:
                    yield sse("end", {"state": a.state.value, "exit_code": a.exit_code, "attempt": a.number})
                    return
            if await request.is_disconnected():
                return
            if time.monotonic() - last_sent > PING_EVERY:
                yield b": ping\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(POLL)

    del job
    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/events/stream", response_class=StreamingResponse, responses={**SSE_RESPONSE, **errors(*AUTHED)})
async def job_events_stream(
    request: Request, p: PlatformDep, user: UserDep, after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
) -> StreamingResponse:
    # On a reconnect EventSource sends Last-Event-ID with the URL it first used:
    # the header is the newer cursor, so it wins over ?after=.
    header = request.headers.get("last-event-id")
    start = int(header) if header and header.isascii() and header.isdigit() and len(header) <= 16 else after
    if start is None:
        start = await run_in_threadpool(store_jobs.last_event_id, p.db)

    async def events() -> AsyncIterator[bytes]:
        cursor = start
        last_sent = time.monotonic()
        while True:
            batch = await run_in_threadpool(store_jobs.events_since, p.db, cursor, user=user)
            for ev in batch:
                try:
                    job = await run_in_threadpool(store_jobs.get_job, p.db, ev.job_id)
                except ModelyardError:  # removed since (modelyard rm): nothing to show of it
                    cursor = ev.id
                    continue
                attempts = await run_in_threadpool(store_jobs.job_attempts, p.db, ev.job_id)
                data = job_to_dict(job, attempts)
                data["event"] = {"from": ev.from_state.value if ev.from_state else None, "to": ev.to_state.value,
                                 "reason": ev.reason, "actor": ev.actor}
                yield sse("job", data, ev.id)
                cursor = ev.id
                last_sent = time.monotonic()
            if batch:
                continue
            if await request.is_disconnected():
                return
            if time.monotonic() - last_sent > PING_EVERY:
                yield b": ping\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(0.1)

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
