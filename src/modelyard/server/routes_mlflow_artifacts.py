"""The MLflow client's artifact routes (``mlflow-artifacts``, proxied through the server): upload,
list, download and delete a run's artifacts, and the tracking API's ``artifacts/list``. Who may
reach what, and where it lies, is services/run_artifacts.py's; this module streams the bytes.

Paths are the client's: ``/api/2.0/mlflow-artifacts/artifacts/runs/ID/artifacts/PATH`` (and the
``/ajax-api`` twins the MLflow UI uses). Errors leave in MLflow's form (server/mlflow_errors.py).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from modelyard.server.auth import get_platform
from modelyard.server.mlflow_auth import Caller, mlflow_caller
from modelyard.server.mlflow_errors import MlflowRoute
from modelyard.server.platform import Platform

router = APIRouter(include_in_schema=False, route_class=MlflowRoute)
PlatformDep = Annotated[Platform, Depends(get_platform)]
CallerDep = Annotated[Caller, Depends(mlflow_caller)]
ROOTS = ("/api/2.0", "/ajax-api/2.0")
PathQuery = Annotated[str, Query(max_length=2048)]


def _routes(method: str, path: str) -> Any:
    """The handler under both roots."""
    def register(handler: Any) -> Any:
        for root in ROOTS:
            router.add_api_route(f"{root}{path}", handler, methods=[method])
        return handler
    return register


@_routes("GET", "/mlflow-artifacts/artifacts")
def list_artifacts(p: PlatformDep, caller: CallerDep, path: PathQuery = "") -> dict[str, Any]:
    return {"files": p.run_artifacts.listing(caller.user, path, only_run=caller.job_id)}


@_routes("GET", "/mlflow-artifacts/artifacts/{artifact_path:path}")
async def download(artifact_path: str, p: PlatformDep, caller: CallerDep) -> StreamingResponse:
    key, size = await run_in_threadpool(p.run_artifacts.file, caller.user, artifact_path, only_run=caller.job_id)

    def chunks() -> Iterator[bytes]:
        with p.storage.open(key) as f:
            while block := f.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"Content-Length": str(size), "X-Content-Type-Options": "nosniff"})


@_routes("PUT", "/mlflow-artifacts/artifacts/{artifact_path:path}")
async def upload(artifact_path: str, request: Request, p: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    body = _BodyReader(request.stream())
    await run_in_threadpool(p.run_artifacts.upload, caller.user, artifact_path, body, only_run=caller.job_id,
                            declared=int(declared) if declared.isdigit() else None)
    return {}


@_routes("DELETE", "/mlflow-artifacts/artifacts/{artifact_path:path}")
def delete(artifact_path: str, p: PlatformDep, caller: CallerDep) -> dict[str, Any]:
    p.run_artifacts.delete(caller.user, artifact_path, only_run=caller.job_id)
    return {}


@_routes("GET", "/mlflow/artifacts/list")
def run_artifacts_list(p: PlatformDep, caller: CallerDep, run_id: Annotated[str, Query(max_length=64)] = "",
                       run_uuid: Annotated[str, Query(max_length=64)] = "", path: PathQuery = "") -> dict[str, Any]:
    return p.run_artifacts.run_listing(caller.user, run_id or run_uuid, path, only_run=caller.job_id)


class _BodyReader:
    """The request's body as a blocking stream, for a worker thread: each read waits on the event
    loop for the next chunk, so the body goes to the store as it arrives, never whole in memory."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""
        self.done = False

    async def _next(self) -> bytes | None:
        try:
            return await self.chunks.__anext__()
        except StopAsyncIteration:
            return None

    def read(self, size: int = -1) -> bytes:
        while not self.pending and not self.done:
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                self.done = True
            else:
                self.pending = chunk
        n = len(self.pending) if size < 0 else size
        out, self.pending = self.pending[:n], self.pending[n:]
        return out
