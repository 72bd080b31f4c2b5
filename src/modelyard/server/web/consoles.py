"""The proxy to a notebook console's JupyterLab: ``/ui/jobs/{id}/lab/...``, every HTTP method and websockets.

Only the job's owner, signed in with the web session, gets through (services/consoles.py decides who
and where). HTTP is streamed both ways with httpx, never read whole; a websocket is bridged frame by
frame to JupyterLab's (the ``websockets`` package as its client), with the subprotocol JupyterLab
picks (its kernel protocol ``v1.kernel.websocket.jupyter.org``).
"""
from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.services import consoles
from modelyard.server.api_schema import MAX_ID
from modelyard.server.auth import COOKIE, session_policy
from modelyard.server.platform import Platform
from modelyard.server.web.pages import SignInRequired
from modelyard.db.records import User
from modelyard.db.sessions import session_user

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

# httpx and websockets are imported by the first request to a console, not at server start (its budget)

router = APIRouter(include_in_schema=False)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})  # another site may link to a console page, not change it
LAB = "/ui/jobs/{job_id}/lab/{path:path}"
# JupyterLab's answers may take long (a big download) but must connect at once: it is on this machine or
# a node of the cluster
TIMEOUT = (3600.0, 5.0)  # httpx.Timeout(read..., connect=...)


JobIdPath = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def _target(scope: Mapping[str, Any]) -> str:
    """The path as the browser sent it, still percent-encoded: decoded, a file named ``a?b`` would end
    its path at the ``?``."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw else quote(scope["path"])


def _user(p: Platform, cookies: dict[str, str]) -> User | None:
    session = cookies.get(COOKIE)
    return session_user(p.db, session, session_policy(p.settings)) if session else None


def _reach(p: Platform, cookies: dict[str, str], job_id: int) -> consoles.Upstream:
    user = _user(p, cookies)
    if user is None:
        raise SignInRequired()
    return consoles.upstream(p, user, job_id)


@router.api_route(LAB, methods=METHODS)
async def lab_http(request: Request, job_id: JobIdPath) -> Response:
    p: Platform = request.app.state.platform
    if request.method not in SAFE:
        consoles.check_same_origin(request.headers, request.url.scheme, request.url.netloc)
    try:
        up = await run_in_threadpool(_reach, p, request.cookies, job_id)
    except ModelyardError as exc:
        if exc.code is ErrorCode.CONFLICT and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return _waiting_page(job_id, exc.message)
        raise
    import httpx

    client = httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT[0], connect=TIMEOUT[1]), follow_redirects=False)
    body = request.stream() if request.method not in ("GET", "HEAD") else None
    upstream_request = client.build_request(
        request.method, up.http_url(_target(request.scope), request.url.query),
        headers=consoles.request_headers(request.headers.items(), up), content=body)
    try:
        answer = await client.send(upstream_request, stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise ModelyardError(ErrorCode.UNAVAILABLE, f"the console of job {job_id} does not answer: "
                             f"{type(exc).__name__}") from None

    async def close() -> None:
        await answer.aclose()
        await client.aclose()

    response = StreamingResponse(answer.aiter_raw(), status_code=answer.status_code, background=BackgroundTask(close))
    response.raw_headers = consoles.response_headers(answer.headers.raw)
    return response


def _waiting_page(job_id: int, why: str) -> HTMLResponse:
    """For a person who opened the link a moment early: it reloads itself until JupyterLab answers."""
    page = (f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>Console of job '
            f'{job_id}</title><p>{html.escape(why)}. This page reloads by itself; '
            f'<a href="/ui/jobs/{job_id}">back to job {job_id}</a>.</p>')
    return HTMLResponse(page, status_code=503, headers={"Retry-After": "2", "Cache-Control": "no-store",
                                                          "Content-Security-Policy": "default-src 'none'"})


@router.websocket(LAB)
async def lab_websocket(websocket: WebSocket, job_id: JobIdPath) -> None:
    p: Platform = websocket.app.state.platform
    try:
        consoles.check_same_origin(websocket.headers, websocket.url.scheme, websocket.url.netloc)
        up = await run_in_threadpool(_reach, p, websocket.cookies, job_id)
    except SignInRequired:
        return await _deny(websocket, ModelyardError(ErrorCode.UNAUTHENTICATED, "sign in first"))
    except ModelyardError as exc:
        return await _deny(websocket, exc)
    headers = consoles.request_headers(websocket.headers.items(), up)
    import websockets
    from websockets.asyncio.client import connect

    try:
        upstream = await connect(up.ws_url(_target(websocket.scope), websocket.url.query), additional_headers=headers,
                                 subprotocols=websocket.scope.get("subprotocols") or None,  # type: ignore[arg-type]
                                 max_size=None, open_timeout=10, compression=None)
    except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
        return await _deny(websocket, ModelyardError(ErrorCode.UNAVAILABLE, f"the console of job {job_id} "
                                                     f"does not answer: {type(exc).__name__}"))
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _bridge(websocket, upstream)


async def _deny(websocket: WebSocket, exc: ModelyardError) -> None:
    try:
        await websocket.send_denial_response(JSONResponse(exc.to_dict(), status_code=exc.http_status))
    except RuntimeError:  # a server without the denial extension: a plain refusal (403)
        await websocket.close(code=1008)


async def _bridge(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Frames both ways until either side closes; then the other is closed with its code."""
    import websockets

    async def from_browser() -> None:
        while True:
            message: dict[str, Any] = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close()
                return
            data = message.get("text") if message.get("text") is not None else message.get("bytes")
            if data is not None:
                await upstream.send(data)

    async def from_console() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for data in upstream:
                if isinstance(data, str):
                    await websocket.send_text(data)
                else:
                    await websocket.send_bytes(data)
        with contextlib.suppress(RuntimeError):
            await websocket.close(code=upstream.close_code or 1000)

    tasks = [asyncio.create_task(from_browser()), asyncio.create_task(from_console())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in [*done, *pending]:
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed, RuntimeError):
            await task
