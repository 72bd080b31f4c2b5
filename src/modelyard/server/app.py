"""The HTTP server: the FastAPI app under /api/v1, its error handling, and ``serve``.

Every error leaves as ``{"error": {"code", "message", "field"}}`` with a 4xx
status (503 when a backing service fails); a traceback never reaches a client.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

import modelyard
from modelyard.config import Settings
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.executors.base import Executor
from modelyard.server import (
    auth, routes_cleanup, routes_compare, routes_consoles, routes_datasets, routes_environments, routes_jobs,
    routes_mlflow, routes_mlflow_artifacts, routes_mlflow_models, routes_mlflow_registry, routes_models, routes_notices,
    routes_secrets, routes_streams, routes_sweeps, routes_system, routes_tokens, routes_ui_api, routes_users, web,
)
from modelyard.server.api_schema import AUTHED, errors
from modelyard.server.body_limit import BodyLimit
from modelyard.server.disk import disk_full_error
from modelyard.server.platform import Platform
from modelyard.db.users import add_token, create_user, get_user_by_name, user_for_token

log = logging.getLogger("modelyard.server")
LOCAL_USER = "local"


def create_app(platform: Platform) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        platform.start()
        try:
            yield
        finally:
            platform.close()

    app = FastAPI(title="modelyard", version=modelyard.__version__, lifespan=lifespan,
                  openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None)
    app.state.platform = platform
    # the MLflow client's tracking API (README "MLflow") first: a loop's log_metric calls are the
    # busiest requests, and its paths share no prefix with /api/v1's or the UI's, so it shadows none
    for prefix in routes_mlflow.PREFIXES:
        app.include_router(routes_mlflow.router, prefix=prefix)
        app.include_router(routes_mlflow_models.router, prefix=prefix)  # its logged models
        app.include_router(routes_mlflow_registry.router, prefix=prefix)  # its model registry
    for module in (routes_system, routes_jobs, routes_streams, routes_ui_api, routes_datasets, routes_environments,
                   routes_notices, routes_users, routes_cleanup, routes_compare, routes_sweeps, routes_consoles, routes_models):
        app.include_router(module.router, prefix="/api/v1")
    # the secret and token routes declare no statuses of their own yet: every one they can answer
    app.include_router(routes_secrets.router, prefix="/api/v1", responses=errors(*AUTHED, 404))
    app.include_router(routes_tokens.router, prefix="/api/v1", responses=errors(*AUTHED, 403, 404, 409))
    app.include_router(routes_mlflow_artifacts.router)  # its artifacts (README "MLflow artifacts"): before the fallback
    web.install(app)  # the browser UI under /ui: pages, static files, the cookie session
    for prefix in routes_mlflow.PREFIXES:  # last: any other route under the prefixes is served before it
        app.include_router(routes_mlflow.fallback, prefix=prefix)
    app.add_middleware(BodyLimit)  # an oversized body is refused before anything reads it
    # added last, so outermost: security headers on every answer, those of other middleware too
    auth.install(app, platform.settings)
    _install_error_handlers(app)
    return app


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    where = ("body", "query", "path", "header")
    parts = [str(x) for x in loc[1:]] if loc and loc[0] in where else [str(x) for x in loc]
    return ".".join(p for p in parts if not p.startswith("function-")) or "body"


def _message(e: dict[str, Any]) -> str:
    if e.get("type") == "json_invalid":
        return f"the body is not valid JSON: {(e.get('ctx') or {}).get('error', 'cannot be decoded')}"
    return str(e.get("msg", "invalid input")).removeprefix("Value error, ")


def _validation_payload(errors: list[dict[str, Any]]) -> dict[str, Any]:
    if any(e.get("type") == "json_invalid" for e in errors):  # its loc is a character offset, not a field
        errors = [{**e, "loc": ("body",)} for e in errors if e.get("type") == "json_invalid"][:1]
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid input"}
    details = [{"field": _field(e.get("loc", ())), "message": _message(e)} for e in errors]
    return {"error": {"code": ErrorCode.INVALID.value, "message": _message(first),
                      "field": _field(first.get("loc", ())), "details": details}}


# Starlette's and FastAPI's own HTTP errors, in our form: an unknown route (404), a
# method the route lacks (405), a body that is not UTF-8 JSON (FastAPI says 400; it is bad
# input like any other, so 422), one over the body limit (413).
_HTTP_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "too_large"}


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    if status == 400:
        status, message, field = 422, "the body cannot be read as JSON (it must be UTF-8 JSON)", "body"
    elif status == 404:
        message, field = f"no such route: {request.method} {request.url.path}", None
    elif status == 405:
        message, field = f"{request.method} is not allowed on {request.url.path}", None
    else:
        message, field = str(exc.detail), "body" if status == 413 else None
    code = _HTTP_CODES.get(status, ErrorCode.INVALID.value)
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status_code=status,
                        headers=getattr(exc, "headers", None))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ModelyardError)
    async def _domain(_r: Request, exc: ModelyardError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _request(_r: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_payload(list(exc.errors())), status_code=422)

    @app.exception_handler(ValidationError)
    async def _model(_r: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse(_validation_payload(list(exc.errors())), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _http_error(request, exc)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def _database(r: Request, exc: Exception) -> JSONResponse:
        if (full := _disk_full(r, exc)) is not None:
            return full
        log.exception("database error", exc_info=exc)
        err = ModelyardError(ErrorCode.UNAVAILABLE, "the database is unavailable; try again")
        return JSONResponse(err.to_dict(), status_code=503)

    @app.exception_handler(OSError)
    async def _os(r: Request, exc: Exception) -> JSONResponse:
        if (full := _disk_full(r, exc)) is not None:
            return full
        return await _unexpected(r, exc)

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse({"error": {"code": "internal", "message": "internal error; see the server log",
                                       "field": None}}, status_code=500)


def _disk_full(r: Request, exc: Exception) -> JSONResponse | None:
    """A full disk said plainly (server/disk.py), not as "the database is unavailable"."""
    err = disk_full_error(exc, r.app.state.platform.settings.home)
    if err is None:
        return None
    log.error("disk full: %s (%s)", err.message, exc)
    return JSONResponse(err.to_dict(), status_code=err.http_status)


def ensure_local_user(platform: Platform, home: Path) -> str:
    """The embedded default's user: an admin named "local" whose token lives in $MODELYARD_HOME/token."""
    token_file = home / "token"
    db = platform.db
    token = token_file.read_text().strip() if token_file.exists() else ""
    if token and user_for_token(db, token) is not None:
        return token
    # this token never expires: only its owner can read the file (0600), the embedded server
    # listens on 127.0.0.1, and every CLI call reads it; revoking it makes the next start write a new one
    user = get_user_by_name(db, LOCAL_USER)
    if user is None:
        user, new = create_user(db, LOCAL_USER, admin=True, token_name="token file")
        token = token or new
        if token != new:
            add_token(db, user.id, token, name="token file")
    else:  # the user is there, so the file's token was revoked: a new one, never the old one again
        token = add_token(db, user.id, name="token file")
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(token_file, 0o600)
    return token


def _bind(host: str, port: int, *, fallback_to_any: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on an accepted connection only when
    # its socket says TCP, and without it every reply (headers and body are two writes)
    # waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if not (fallback_to_any and exc.errno == errno.EADDRINUSE):
            sock.close()
            raise ModelyardError(ErrorCode.UNAVAILABLE, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        sock.bind((host, 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _previous_port(server_file: Path) -> int:
    try:
        return int(orjson.loads(server_file.read_bytes())["url"].rsplit(":", 1)[1])
    except (OSError, ValueError, KeyError, IndexError, orjson.JSONDecodeError):
        return 0


def serve(*, host: str = "127.0.0.1", port: int = 8765, embedded: bool = False,
          settings: Settings | None = None, executor: Executor | None = None) -> None:
    """Run the server until interrupted. ``embedded``: the CLI's background server for MODELYARD_HOME."""
    settings = settings or Settings.from_env()
    settings.home.mkdir(parents=True, exist_ok=True)
    server_file = settings.home / "server.json"
    if embedded:
        host, port = "127.0.0.1", _previous_port(server_file)
    sock = _bind(host, port, fallback_to_any=embedded)
    bound_port = sock.getsockname()[1]
    public_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{public_host}:{bound_port}"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # supervisors on other nodes report to MODELYARD_SERVER_URL: 127.0.0.1 is each node's own
    platform = Platform(settings, server_url=settings.server_url or url,
                        server_file=server_file if embedded else None, executor=executor)
    ensure_local_user(platform, settings.home)
    app = create_app(platform)
    if embedded:
        tmp = server_file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"url": url, "pid": os.getpid()}))
        os.replace(tmp, server_file)
    log.info("modelyard %s listening on %s (home %s)", modelyard.__version__, url, settings.home)
    import uvicorn  # here, not at the top: importing the app (the CLI, tests) needs no server and its click

    from modelyard.server.one_write import OneWriteH11Protocol  # uvicorn's h11 protocol, one write a reply

    # X-Forwarded-For/-Proto are believed only from the admin's proxy: otherwise anyone could
    # name their own address (and dodge the sign-in throttle) or claim https
    config = uvicorn.Config(app, http=OneWriteH11Protocol, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=3,
                            proxy_headers=settings.behind_tls_proxy, forwarded_allow_ips=settings.trusted_proxies)
    uvicorn.Server(config).run(sockets=[sock])
