"""Health, identity, users, capacity, code snapshots and supervisor reports."""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool

import modelyard
from modelyard.artifacts.keys import snapshot_key
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.notify import MAX_EMAIL
from modelyard.jobs.units import format_size
from modelyard.scheduler import policy
from modelyard.scheduler.loop import running_job
from modelyard.server.api_models import Health, NewUserOut, ReportAck, SnapshotOut, SnapshotUploadOut, UserOut
from modelyard.server.api_schema import AUTHED, MAX_ID, USER_NAME_PATTERN, errors
from modelyard.server.auth import admin_user, bearer_token, current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.services.queue import node_row
from modelyard.services.snapshots import CodeUpload
from modelyard.artifacts.snapshot import SnapshotLimits, check_snapshot
from modelyard.db import jobs as store_jobs
from modelyard.db import reports
from modelyard.db.records import User

router = APIRouter()
log = logging.getLogger("modelyard.server")
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]


@router.get("/health", response_model=Health, responses=errors(503))
def health() -> dict[str, Any]:
    return {"status": "ok", "version": modelyard.__version__}


@router.get("/me", response_model=UserOut, responses=errors(*AUTHED))
def me(user: UserDep) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "is_admin": user.is_admin}


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=USER_NAME_PATTERN)
    admin: StrictBool = False  # strict: 0 or "yes" is a mistake, not an admin
    # a non-admin user on a server without MODELYARD_JOB_UIDS, knowing its jobs run as the server's user
    no_isolation: StrictBool = False
    email: str | None = Field(default=None, max_length=MAX_EMAIL)  # where their jobs' emails go


@router.post("/users", status_code=201, response_model=NewUserOut, responses=errors(*AUTHED, 403, 409))
def new_user(body: NewUser, p: PlatformDep, admin: Annotated[User, Depends(admin_user)]) -> dict[str, Any]:
    ttl = p.settings.token_ttl  # the first token expires like any other (MODELYARD_TOKEN_TTL)
    user, token = p.create_user(body.name, admin=body.admin, no_isolation=body.no_isolation,
                                expires_at=time.time() + ttl if ttl else None, email=body.email)
    log.info("user %s (admin: %s) created by %s", user.name, user.is_admin, admin.name)
    return {"user": {"id": user.id, "name": user.name, "is_admin": user.is_admin}, "token": token}


@router.get("/capacity", responses=errors(*AUTHED))
def capacity(p: PlatformDep, _user: UserDep) -> dict[str, Any]:
    """The platform's nodes, with their labels, GPUs, CPUs and memory, and what running jobs use on each."""
    nodes = policy.usage(p.capacity, [running_job(a) for a in store_jobs.running_allocations(p.db)])
    used = {"gpus": sum(len(n.gpus) for n in nodes), "cpus": sum(n.cpus for n in nodes),
            "memory": sum(n.memory for n in nodes)}
    return {
        "total": p.capacity.total.model_dump(), "used": used,
        "gpus": [{"index": g.index, "name": g.name, "memory_total": g.memory_total} for g in p.capacity.gpus],
        "nodes": [node_row(n) for n in nodes],
    }


@router.post("/snapshots", status_code=201, response_model=SnapshotOut, responses=errors(*AUTHED))
async def upload_snapshot(request: Request, p: PlatformDep, _user: UserDep) -> dict[str, Any]:
    """Stream the body to a temporary file (hashing as it goes), then store it under its hash."""
    limit = p.settings.max_snapshot_bytes
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix="snapshot-", suffix=".tar.gz")
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ModelyardError(
                        ErrorCode.TOO_LARGE,
                        f"the snapshot is over the server's limit of {format_size(limit)} (MODELYARD_MAX_SNAPSHOT)",
                        field="workdir")
                digest.update(chunk)
                await run_in_threadpool(f.write, chunk)
        if size == 0:
            raise ModelyardError(ErrorCode.INVALID, "the snapshot is empty", field="snapshot")
        # what it unpacks to, not only what it weighs: a 1 MB archive can hold 1 GiB of zeros
        await run_in_threadpool(_check_unpacked, tmp, SnapshotLimits(limit, p.settings.max_snapshot_files))
        key = snapshot_key(digest.hexdigest())
        if not await run_in_threadpool(p.storage.exists, key):
            await run_in_threadpool(p.storage.put_file, tmp, key)
        return {"key": key, "size": size}
    finally:
        os.unlink(tmp)


_MULTIPART = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                 "description": "a folder's files, each part's filename its path in the folder; .gitignore files first"},
        "archive": {"type": "string", "format": "binary", "description": "or one .zip or .tar.gz of the folder"}}}}}}}


@router.post("/snapshots/upload", status_code=201, response_model=SnapshotUploadOut,
             responses=errors(*AUTHED, 413), openapi_extra=_MULTIPART)
async def upload_code(request: Request, p: PlatformDep, _user: UserDep) -> dict[str, Any]:
    """A folder's files or an archive from a browser, snapshotted by the CLI's rules (``.gitignore``,
    MODELYARD_MAX_SNAPSHOT, MODELYARD_MAX_SNAPSHOT_FILES) and stored as the CLI's upload would be."""
    limits = SnapshotLimits(p.settings.max_snapshot_bytes, p.settings.max_snapshot_files)
    upload = CodeUpload(request.headers.get("content-type"), p.settings.home / "code-uploads", limits)
    try:
        async for chunk in request.stream():
            await run_in_threadpool(upload.feed, chunk)
        stored = await run_in_threadpool(upload.finish, p.storage)
    finally:
        await run_in_threadpool(upload.close)
    return {"key": stored.key, "size": stored.size, "files": stored.files, "bytes": stored.bytes}


def _check_unpacked(path: str, limits: SnapshotLimits) -> None:
    with open(path, "rb") as f:
        check_snapshot(f, limits)


@router.post("/attempts/{attempt_id}/report", response_model=ReportAck, responses=errors(*AUTHED))
async def report(attempt_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request, p: PlatformDep) -> dict[str, Any]:
    token = bearer_token(request)
    try:
        batch = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ModelyardError(ErrorCode.INVALID, f"not JSON: {exc}", field="body") from exc
    if not isinstance(batch, dict):
        raise ModelyardError(ErrorCode.INVALID, "must be a JSON object", field="body")
    result = await run_in_threadpool(_apply, p, attempt_id, token, batch)
    return {"stored": result.stored, "stop": result.stop}


def _apply(p: Platform, attempt_id: int, token: str, batch: dict[str, Any]) -> reports.ReportResult:
    attempt = reports.authenticate_attempt(p.db, attempt_id, token)
    rank = reports.report_rank(batch)  # rank 0's contact is the attempt's; another node rank's is its own
    # before the write, which a full disk may refuse
    p.scheduler.contacts.touch((attempt.id, rank) if rank else attempt.id, p.scheduler.clock())
    result = reports.apply_report(p.db, attempt, batch)
    if "running" in result.changed:
        p.job_started(attempt.job_id)
    if result.final_state is not None:
        p.job_ended(attempt.job_id, result.final_state)
    elif "ended" in result.changed:
        p.scheduler.wake()  # retried: requeued, and its resources are free again
    return result
