"""Dataset routes: upload a local source, create a version from it (or from a URL the server
reads), list, show (with the jobs that used each version and who did what), change who may
read it, download a file, remove. Who may do which is ``datasets.access``, applied by
``Platform.dataset_access`` (``services/datasets.py``).

Nomenclature: an *upload* is a tar of a client's local SOURCE, streamed to
``$MODELYARD_HOME/uploads/<id>.tar`` and unpacked next to it; a create names it
by id, and the unpacked folder is deleted once the create has ended, whatever
its outcome. Creating runs in the threadpool: reading, splitting, formatting
and uploading a large source takes a while and must not block the event loop.
"""
from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modelyard import datasets
from modelyard.datasets import list_datasets, validate_name
from modelyard.datasets.access import reads_server_disk
from modelyard.datasets.bounds import too_large, unpack_tar
from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.server.api_schema import ErrorResponse, NameParam
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.db.records import User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_UPLOAD_MAX_AGE = 24 * 3600.0  # an upload no create claimed (the client died) is swept after this
_WHY = {401: "No bearer token, or an unknown one", 403: "A dataset of another user's that the caller may only read",
        404: "No such dataset, or another user's private one", 409: "Queued or running jobs use the version",
        413: "Over a dataset bound (the message names it)", 422: "Bad input: the message names the field",
        429: "Too many bad tokens from this address: wait Retry-After seconds",
        503: "A backing service failed; try again"}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=``: the error statuses a route may answer, each ``{"error": {...}}``."""
    return {s: {"model": ErrorResponse, "description": _WHY[s]} for s in (401, 413, 422, 429, 503, *statuses)}


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    source: str | None = Field(None, description="a path or fsspec URL the server can read")
    upload: str | None = Field(None, description="the id POST /datasets/uploads returned")
    split: str | dict[str, float] | None = Field(None, description='e.g. "train=0.8,val=0.2"')
    seed: int = 0
    format: str | None = None
    description: str | None = Field(None, max_length=2000)
    label_column: str | None = None
    data_key: str | None = None
    kind: str | None = None
    visibility: Literal["private", "public"] | None = Field(
        None, description="who may read it: its owner and admins (private, the default for a new name) or "
                          "everyone (public); given for an existing name, it changes it")


class VisibilityBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    visibility: Literal["private", "public"]


def uploads_dir(p: Platform) -> Path:
    return p.settings.home / "uploads"


@router.post("/datasets/uploads", status_code=201, responses=_errors(413))
async def upload(request: Request, p: PlatformDep, _user: UserDep) -> dict[str, Any]:
    """Stream a tar of a local source to disk, then unpack it; ``{"upload": id, "size": n}``.
    Bounded: the bytes sent, and the members and bytes the tar unpacks to (413 naming the limit)."""
    limits = p.settings.dataset_limits
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.upload:
        raise too_large("the upload", limits.upload, "MODELYARD_MAX_DATASET_UPLOAD")
    root = uploads_dir(p)
    await run_in_threadpool(_sweep, root)
    upload_id = uuid.uuid4().hex
    tar_path, size = root / f"{upload_id}.tar", 0
    try:
        with open(tar_path, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.upload:  # a client may send more than it declared, or declare nothing
                    raise too_large("the upload", limits.upload, "MODELYARD_MAX_DATASET_UPLOAD")
                await run_in_threadpool(f.write, chunk)
        if size == 0:
            raise ModelyardError(ErrorCode.INVALID, "the upload is empty", field="source")
        await run_in_threadpool(unpack_tar, tar_path, root / upload_id, limits)
    except BaseException:
        shutil.rmtree(root / upload_id, ignore_errors=True)
        raise
    finally:
        tar_path.unlink(missing_ok=True)
    return {"upload": upload_id, "size": size}


@router.post("/datasets", status_code=201, responses=_errors(403, 404, 413))
async def create(body: CreateBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    source, unpacked = _source_of(body, p, user)
    try:
        return await run_in_threadpool(_create, p, body, source, user, unpacked)
    finally:
        if unpacked is not None:
            await run_in_threadpool(shutil.rmtree, unpacked, True)


@router.get("/datasets", responses=_errors())
def list_all(p: PlatformDep, user: UserDep) -> dict[str, Any]:
    """The caller's datasets and the public ones (every one, for an admin), by name."""
    return p.dataset_access.listing_view(user)


@router.get("/datasets/{name}", responses=_errors(404))
def show_name(name: NameParam, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return p.dataset_access.name_view(name, user)


@router.patch("/datasets/{name}", responses=_errors(403, 404))
def change(name: NameParam, body: VisibilityBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    """Make a dataset public or private again (its owner or an admin)."""
    o = p.dataset_access.set_visibility(name, user, body.visibility)
    return {"name": o.name, "owner": o.owner, "visibility": o.visibility}


@router.get("/datasets/{name}/{version}", responses=_errors(404))
def show_version(name: NameParam, version: str, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return p.dataset_access.version_view(p.dataset_access.version(f"{name}:{version}", user), user)


@router.get("/datasets/{name}/{version}/files/{path:path}", responses=_errors(404))
async def download_file(
    name: NameParam, version: str, path: str, p: PlatformDep, user: UserDep,
) -> StreamingResponse:
    manifest = await run_in_threadpool(p.dataset_access.version, f"{name}:{version}", user)
    entry = next((f for f in manifest.files if f.path == path), None)
    if entry is None:
        raise not_found(f"file {path!r} of dataset {manifest.ref}")
    key = f"{manifest.prefix}/{entry.path}"

    def chunks():  # type: ignore[no-untyped-def]
        with p.storage.open(key) as f:
            while block := f.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"Content-Length": str(entry.size), "X-Sha256": entry.sha256})


@router.delete("/datasets/{name}", responses=_errors(403, 404, 409))
def remove_name(name: NameParam, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    removed = p.remove_dataset(validate_name(name, field="dataset"), user)
    return {"removed": [p.dataset_access.version_dict(m, user, files=False) for m in removed]}


@router.delete("/datasets/{name}/{version}", responses=_errors(403, 404, 409))
def remove_version(name: NameParam, version: str, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    removed = p.remove_dataset(f"{name}:{version}", user)
    return {"removed": [p.dataset_access.version_dict(m, user, files=False) for m in removed]}


# -- helpers ---------------------------------------------------------------------------------------


def _create(p: Platform, body: CreateBody, source: str, user: User, unpacked: Path | None) -> dict[str, Any]:
    claimed = p.dataset_access.claim(body.name, user, body.visibility)
    before = {m.version for m in list_datasets(p.datasets, body.name)}
    try:
        manifest = datasets.create_dataset(
            p.storage, p.dataset_access.recording_index(user), body.name, source, split=body.split, seed=body.seed,
            fmt=body.format, description=body.description, label_column=body.label_column, data_key=body.data_key,
            kind=body.kind, limits=p.settings.dataset_limits,
        )
    except BaseException as e:
        if claimed:
            p.dataset_access.abandon(body.name)
        if isinstance(e, ModelyardError) and unpacked is not None:
            # the upload's folder is a path on the server: the message names it as the client knows it
            raise ModelyardError(e.code, e.message.replace(str(unpacked), "upload"), field=e.field) from None
        raise
    return {**p.dataset_access.version_dict(manifest, user), "new": manifest.version not in before, "jobs": []}


def _source_of(body: CreateBody, p: Platform, user: User) -> tuple[str, Path | None]:
    """The source to read, and the unpacked upload to delete afterwards (if it is one)."""
    if (body.source is None) == (body.upload is None):
        raise ModelyardError(ErrorCode.INVALID, "give either a source the server can read or an upload",
                             field="source")
    if body.upload is not None:
        folder = uploads_dir(p) / body.upload
        if not _UPLOAD_ID.fullmatch(body.upload) or not folder.is_dir():
            raise ModelyardError(ErrorCode.INVALID, f"no upload {body.upload!r}; upload the source first",
                                 field="upload")
        entries = os.listdir(folder)
        # a tar of one folder or one file: that is the source, named as the client named it
        return str(folder / entries[0]) if len(entries) == 1 else str(folder), folder
    source = body.source.strip()
    if not user.is_admin:
        if reads_server_disk(source):
            # a path on the server's own disk would let any user read the server's files
            raise ModelyardError(ErrorCode.FORBIDDEN, "only an admin may import a path on the server; upload "
                                 "the source instead (the CLI does so for a local SOURCE)", field="source")
        if not allowed_source(source, p.settings.dataset_sources):
            # the server reads a URL with its own credentials: a user may name only what the admin opened
            opened = ", ".join(p.settings.dataset_sources) or "none"
            raise ModelyardError(ErrorCode.FORBIDDEN, f"only an admin may import from {source}; open to everyone "
                                 f"(MODELYARD_DATASET_SOURCES): {opened}; or upload the source instead",
                                 field="source")
    return source, None


def allowed_source(source: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``source`` lies under one of the URL ``prefixes``: a prefix names a whole path
    segment (``s3://team`` opens ``s3://team/x``, not ``s3://team-other``), and a source that
    chains URLs or climbs with ``..`` is never under one."""
    if "::" in source or ".." in source.split("/"):
        return False
    return any(source == pre.rstrip("/") or source.startswith(pre if pre.endswith("/") else pre + "/")
               for pre in prefixes)


def _sweep(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - _UPLOAD_MAX_AGE
    for entry in root.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        except OSError:
            pass  # another request swept it first
