"""Clean-up routes: remove a job, the removals record, the disk used (README "Removing jobs, retention and disk")."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from modelyard.server.api_schema import AUTHED, JobId, OffsetQuery, errors
from modelyard.server.auth import admin_user, current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.db.records import User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]
AdminDep = Annotated[User, Depends(admin_user)]


@router.delete("/jobs/{job_id}", responses=errors(*AUTHED, 404, 409))
def remove_job(job_id: JobId, p: PlatformDep, user: UserDep, keep_final: bool = False) -> dict[str, Any]:
    """Remove an ended job: its logs, metrics, outputs, run folders, code (unless another job shares
    it) and row; ``keep_final``: its final/ and row stay, marked removed. 409 while it may still run."""
    return p.cleanup.remove_job(user, job_id, keep_final=keep_final)


@router.get("/admin/removals", responses=errors(*AUTHED, 403))
def removals(
    p: PlatformDep, _admin: AdminDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50, offset: OffsetQuery = 0,
    reason: Literal["rm", "retention"] | None = None,
) -> dict[str, Any]:
    return p.cleanup.removals(limit=limit, offset=offset, reason=reason)


@router.get("/admin/disk", responses=errors(*AUTHED, 403))
def disk(
    p: PlatformDep, _admin: AdminDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50, offset: OffsetQuery = 0,
    refresh: bool = False,
) -> dict[str, Any]:
    """Disk used per user, per job (largest first, paged), datasets, snapshots, caches, run folders and
    the db, measured at most every 30 s (``refresh``: now), and the latest removals."""
    return p.cleanup.disk(limit=limit, offset=offset, refresh=refresh)
