"""The browser's session cookie and the sign-in form's CSRF token.

Signing in with an API token makes a server-side session (``db/sessions.py``);
the cookie holds only that session's random id, never the API token, so
signing out (which deletes the session) leaves the old cookie worth nothing.
The cookie is HttpOnly (the pages' scripts never see it) and SameSite=Strict;
the API accepts it in place of ``Authorization: Bearer`` (``auth.current_user``),
so the UI reads exactly what the CLI reads, and EventSource streams and
download links work because the browser sends it by itself.

Cross-site requests: a request that changes anything (not GET/HEAD) is only
authenticated by the cookie when it also carries ``X-Modelyard-UI`` — a
header another site cannot add without a CORS preflight, which this server
never grants. The sign-in form itself is protected from login CSRF (another
site signing a browser in as the attacker) by a double-submit token: a random
value in a SameSite=Strict cookie and in the form, which must match.

``Secure``: set when the request is https, and always when the admin says the
server is behind a TLS-terminating proxy (``MODELYARD_BEHIND_TLS_PROXY``);
only then are the proxy's X-Forwarded-* headers believed (uvicorn's
``proxy_headers``, from ``MODELYARD_TRUSTED_PROXIES``).
"""
from __future__ import annotations

import hmac
import secrets

from fastapi import Request
from fastapi.responses import Response

from modelyard.config import Settings
from modelyard.server.auth import COOKIE

CSRF_COOKIE = "modelyard_csrf"
CSRF_FIELD = "csrf"


def secure(request: Request, settings: Settings) -> bool:
    return settings.behind_tls_proxy or request.url.scheme == "https"


def set_session_cookie(response: Response, value: str, request: Request, settings: Settings) -> None:
    response.set_cookie(COOKIE, value, max_age=int(settings.session_max), httponly=True, samesite="strict",
                        path="/", secure=secure(request, settings))


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure(request, settings))


def csrf_token(request: Request) -> str:
    """The form's CSRF value: the browser's current one, or a new one (``set_csrf_cookie`` stores it)."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)


def set_csrf_cookie(response: Response, value: str, request: Request, settings: Settings) -> None:
    response.set_cookie(CSRF_COOKIE, value, max_age=3600, httponly=True, samesite="strict", path="/ui/login",
                        secure=secure(request, settings))


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """Does the form's value match the cookie, and does the request come from this site?

    A cross-site POST carries no SameSite=Strict cookie, so it fails the match;
    ``Sec-Fetch-Site`` and ``Origin`` refuse it too where the browser sends them."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return False
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"
