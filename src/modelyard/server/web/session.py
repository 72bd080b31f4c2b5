"""The browser's session: the bearer token kept in an HttpOnly cookie.

The pages' scripts never see the token (an injected script cannot steal it);
instead this middleware hands the cookie to the API as the usual
``Authorization: Bearer`` header, so /api/v1 has one way to authenticate and
the UI reads exactly what the CLI reads. EventSource streams and download
links work because the browser sends the cookie by itself.

Cross-site requests: the cookie is ``SameSite=Strict``, and a request that
changes anything (not GET/HEAD) is only authenticated by the cookie when it
also carries ``X-Modelyard-UI`` — a header another site cannot add without a
CORS preflight, which this server never grants.
"""
from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "modelyard_token"
UI_HEADER = b"x-modelyard-ui"
SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_AGE = 30 * 86400


class CookieAuth:
    """ASGI middleware: ``Cookie: modelyard_token=T`` becomes ``Authorization: Bearer T`` on /api/v1."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/v1/"):
            headers = list(scope["headers"])
            token = bearer_from_cookie(headers, scope["method"])
            if token:
                scope = {**scope, "headers": [*headers, (b"authorization", b"Bearer " + token.encode())]}
        await self.app(scope, receive, send)


def bearer_from_cookie(headers: list[tuple[bytes, bytes]], method: str) -> str | None:
    """The cookie's token, when it may stand in for a missing Authorization header."""
    names = {k.lower() for k, _ in headers}
    if b"authorization" in names:
        return None
    if method not in SAFE_METHODS and UI_HEADER not in names:
        return None
    for key, value in headers:
        if key.lower() == b"cookie":
            token = token_from_cookie_header(value.decode("latin-1"))
            if token:
                return token
    return None


def token_from_cookie_header(header: str) -> str | None:
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(header)
    except Exception:  # a malformed Cookie header is the browser's or an attacker's problem, not a 500
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel and morsel.value else None
