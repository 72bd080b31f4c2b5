"""Sweep routes (README "Sweeps"): create, list, show, stop; the work is in services/sweeps.py."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from modelyard.jobs.sweep import SweepSpec
from modelyard.services import sweeps as sweeps_service
from modelyard.server.api_schema import AUTHED, MAX_ID, OffsetQuery, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.db.records import User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]
SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="a sweep's id")]


class SweepBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: SweepSpec
    # the code every trial runs: an uploaded snapshot's key (POST /snapshots), as a job's
    snapshot: str | None = Field(None, max_length=200)


@router.post("/sweeps", status_code=201, responses=errors(*AUTHED, 403, 404, 409))
def create(body: SweepBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return sweeps_service.create(p, user, body.spec, snapshot=body.snapshot)


@router.get("/sweeps", responses=errors(*AUTHED))
def list_sweeps(p: PlatformDep, user: UserDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                offset: OffsetQuery = 0) -> dict[str, Any]:
    """The caller's own sweeps, newest first."""
    return sweeps_service.listing(p, user, limit=limit, offset=offset)


@router.get("/sweeps/{sweep_id}", responses=errors(*AUTHED, 404))
def show(sweep_id: SweepId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return sweeps_service.show(p, user, sweep_id)


@router.post("/sweeps/{sweep_id}/stop", responses=errors(*AUTHED, 404, 409))
def stop(sweep_id: SweepId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    """Stop the sweep and its trials in flight."""
    return sweeps_service.stop(p, user, sweep_id)
