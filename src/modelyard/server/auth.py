"""Who is asking: a bearer token, or the web UI's session cookie; as FastAPI dependencies.

``current_user`` takes ``Authorization: Bearer <token>`` (a live API token),
or, without that header, the UI's session cookie (``web/session.py`` says
when a cookie may stand in). Bad tokens are counted per client address
(``throttle.py``); an address over its limit is answered 429 with
Retry-After. ``install`` wires the throttle, its answer and the security
headers into the app.
"""
from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from modelyard.config import Settings
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.headers import SecurityHeaders
from modelyard.server.platform import Platform
from modelyard.server.throttle import FailureThrottle, Throttled
from modelyard.db.records import User
from modelyard.db.sessions import SessionPolicy, session_user
from modelyard.db.users import user_for_token

COOKIE = "modelyard_session"
UI_HEADER = "x-modelyard-ui"
SAFE_METHODS = frozenset({"GET", "HEAD"})


async def get_platform(request: Request) -> Platform:
    # async: a sync dependency would cost every request a hop to the threadpool and back
    return request.app.state.platform


def throttle(request: Request) -> FailureThrottle:
    return request.app.state.auth_throttle


def client_address(request: Request) -> str:
    # behind a trusted proxy uvicorn has already put the forwarded client's address here
    return request.client.host if request.client else "unknown"


def session_policy(settings: Settings) -> SessionPolicy:
    return SessionPolicy(idle=settings.session_idle, absolute=settings.session_max)


def session_id_for_api(request: Request) -> str | None:
    """The cookie's session id when it may stand in for a missing Authorization header."""
    if "authorization" in request.headers:
        return None
    if request.method not in SAFE_METHODS and UI_HEADER not in request.headers:
        return None
    return request.cookies.get(COOKIE) or None


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ModelyardError(ErrorCode.UNAUTHENTICATED, "missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


def current_user(request: Request, platform: Platform = Depends(get_platform)) -> User:
    session = session_id_for_api(request)
    if session is not None:
        user = session_user(platform.db, session, session_policy(platform.settings))
        if user is None:
            raise ModelyardError(ErrorCode.UNAUTHENTICATED, "the web session has ended; sign in again")
        return user
    token = bearer_token(request)
    return user_for_api_token(request, platform, token)


def user_for_api_token(request: Request, platform: Platform, token: str) -> User:
    """The token's user; a wrong one counts against the client's address (checked first)."""
    address = client_address(request)
    throttle(request).check(address)
    user = user_for_token(platform.db, token)
    if user is None:
        throttle(request).failed(address)
        raise ModelyardError(ErrorCode.UNAUTHENTICATED, "unknown, expired or revoked token")
    return user


def admin_user(user: User = Depends(current_user)) -> User:
    if not user.is_admin:
        raise ModelyardError(ErrorCode.FORBIDDEN, "only an admin may do this")
    return user


def throttled_response(exc: Throttled) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=429, headers={"Retry-After": str(exc.retry_after)})


def install(app: FastAPI, settings: Settings) -> None:
    """The failure throttle, its 429 answer, and the security headers on every response."""
    app.state.auth_throttle = FailureThrottle(settings.auth_failures)
    app.add_exception_handler(Throttled, lambda _request, exc: throttled_response(exc))  # type: ignore[arg-type]
    app.add_middleware(SecurityHeaders)
