"""The request-body limit: a JSON body over ``MAX_JSON_BODY`` is refused with 413 before it is read whole.

The routes that stream their body to disk (code snapshots, dataset uploads, MLflow artifacts) and the
supervisors' report batches have their own limits and are left out (``STREAMED``), as is a notebook
console's proxy, whose JupyterLab has its own.
Starlette's own ``RequestBodyLimitMiddleware`` answers plain text, not our error
form, and exists only in recent Starlette releases, hence this small one.
"""
from __future__ import annotations

import re

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.jobs.units import format_size
from modelyard.server.mlflow_auth import MLFLOW_PREFIXES

MAX_JSON_BODY = 1024 * 1024
# a notebook console's requests go to its JupyterLab streamed, and a saved notebook with plots is megabytes
STREAMED = re.compile(r"^(/api/v1/(snapshots(/upload)?|datasets/uploads|attempts/[^/]+/report)$"
                      r"|/(api|ajax-api)/2\.0/mlflow-artifacts/artifacts/|/ui/jobs/[0-9]+/lab/)")


def too_large_message(limit: int) -> str:
    return f"the request body is over the limit of {format_size(limit)} ({limit} bytes)"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body without a Content-Length grows past the limit;
    an HTTPException, so FastAPI's body parsing lets it through to the error handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit: int = MAX_JSON_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or STREAMED.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, scope["path"])
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send, path: str) -> None:
        message = too_large_message(self.limit)
        if path.startswith(MLFLOW_PREFIXES):  # the MLflow client reads its own error form
            body = orjson.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": message})
        else:
            body = orjson.dumps({"error": {"code": "too_large", "message": message, "field": "body"}})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
