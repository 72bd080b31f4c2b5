"""Console routes: start a notebook console, and ask whether it is ready (README "Notebook consoles").

The console itself is reached through the web UI's proxy (server/web/consoles.py), with the session.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from modelyard.services import consoles as consoles_service
from modelyard.services import jobs as jobs_service
from modelyard.server.api_models import JobOut
from modelyard.server.api_schema import AUTHED, JobId, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.db.records import User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]


class ConsoleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # a job spec's fields (resources, image, requirements, environment, dataset, env, name, max_runtime, ...)
    # but the command, which is the platform's
    spec: dict[str, Any] = Field(default_factory=dict)
    idle_timeout: float | str | None = Field(None, description="seconds, or e.g. 1h; default 1h")
    snapshot: str | None = Field(None, max_length=200)


class ConsoleStatus(BaseModel):
    job_id: int
    state: str
    ready: bool  # JupyterLab answers: the link works
    path: str  # the link, on this server, to open in a signed-in browser
    idle_timeout: float


@router.post("/consoles", status_code=201, response_model=JobOut, responses=errors(*AUTHED, 404, 409))
def create_console(body: ConsoleBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    job = consoles_service.create(p, user, body.spec, idle_timeout=body.idle_timeout, snapshot=body.snapshot)
    return jobs_service.full(p, job)


@router.get("/jobs/{job_id}/console", response_model=ConsoleStatus, responses=errors(*AUTHED, 404, 409))
def console_status(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return consoles_service.status(p, user, job_id)
