"""Security headers on every answer, pages and API alike.

The UI needs nothing from another origin and no inline script or style (its
JavaScript is modules under /ui/static, htmx and uPlot are vendored, and
htmx's own indicator <style> is turned off in base.html), so the policy is
"self" only and no framing. FastAPI's /api/v1/docs page is the exception:
Swagger UI comes from a CDN and starts with an inline script, so that one
page gets a policy that allows exactly those. A notebook console's JupyterLab keeps the policy it
sends itself.
"""
from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
DOCS_PATH = "/api/v1/docs"
# a notebook console's JupyterLab, proxied (server/web/consoles.py): its pages bring their own policy
CONSOLE_PATH = re.compile(r"/ui/jobs/[0-9]+/lab(/|$)")


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    if CONSOLE_PATH.match(path):
        # JupyterLab needs inline styles, eval'd extensions and frames of its own; its CSP says what
        return [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
    csp = DOCS_CSP if path == DOCS_PATH else CSP
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]


class SecurityHeaders:
    """ASGI middleware: adds ``security_headers`` to each response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["path"])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in extra if h[0] not in present)]}
            await send(message)

        await self.app(scope, receive, with_headers)
