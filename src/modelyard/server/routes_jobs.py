"""Job routes: submit, list, show, stop, restart, clone, events, logs, metrics, outputs."""
from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs import JobSpec
from modelyard.jobs.spec import MAX_NAME, MAX_TAGS
from modelyard.services import job_query as job_query_service
from modelyard.services import jobs as jobs_service
from modelyard.services.jobs import attempt_of
from modelyard.server.api_models import EventList, JobList, JobOut, LogPage, OutputList, TagsOut
from modelyard.server.api_schema import AUTHED, MAX_ID, AttemptQuery, JobId, NodeQuery, OffsetQuery, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.db import jobs as store_jobs
from modelyard.db import ranks as store_ranks
from modelyard.db import reports
from modelyard.db.records import User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: JobSpec
    snapshot: str | None = None
    # a next round of this job (one of the user's): it starts with that job's outputs in MODELYARD_RESUME_DIR,
    # with the code in ``snapshot`` (the web form's "clone with new code")
    resume_from: int | None = Field(None, ge=1, le=MAX_ID)


class CloneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resume: StrictBool = False
    command: list[str] | str | None = None
    name: str | None = Field(None, max_length=MAX_NAME)
    # new code for the clone (an uploaded snapshot's key, POST /snapshots); none: the source job's
    snapshot: str | None = Field(None, max_length=200)
    # over the source's: a parameter given here replaces its value, a tag is added to the source's
    params: dict[str, str | int | float | bool] | list[str] | None = None
    tags: list[str] | None = None


@router.post("/jobs", status_code=201, response_model=JobOut, responses=errors(*AUTHED, 404, 409))
def submit(body: SubmitBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    if body.spec.console is not None:
        raise ModelyardError(ErrorCode.INVALID, "a notebook console is started with POST /api/v1/consoles "
                             "(modelyard notebook), which sets its command", field="spec.console")
    return jobs_service.full(p, p.submit(user, body.spec, snapshot=body.snapshot, resume_from=body.resume_from))


Texts = list[Annotated[str, Field(max_length=200)]] | None


@router.get("/jobs", response_model=JobList, responses=errors(*AUTHED))
def list_jobs(
    p: PlatformDep, user: UserDep,
    state: Annotated[Texts, Query(max_length=20, description="a job state; repeatable: any of them")] = None,
    q: Annotated[str | None, Query(max_length=MAX_NAME, description="in the job's name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50, offset: OffsetQuery = 0,
    all: bool = False,
    param: Annotated[Texts, Query(max_length=50, description="a filter NAME OP VALUE, OP one of = != < <= > >= "
                                  "(repeatable: all must hold)")] = None,
    tag: Annotated[Texts, Query(max_length=50, description="a tag the job has (repeatable: all)")] = None,
    owner: Annotated[str | None, Query(max_length=100)] = None,
    dataset: Annotated[str | None, Query(max_length=200, description="NAME (any version) or NAME:VERSION")] = None,
    environment: Annotated[str | None, Query(max_length=100)] = None,
    experiment: Annotated[str | None, Query(max_length=500, description="the name of its MLflow experiment "
                                            "(Default: in none)")] = None,
    since: Annotated[str | None, Query(max_length=40, description="created at or after: ISO date or Unix seconds")] = None,
    until: Annotated[str | None, Query(max_length=40, description="created before: ISO date or Unix seconds")] = None,
    sort: Annotated[str | None, Query(max_length=120, description="id, created, name, state, owner or param:NAME; "
                                      "-KEY for descending")] = None,
) -> dict[str, Any]:
    query = job_query_service.build_query(
        params=param or (), tags=tag or (), owner=owner, states=state or (), dataset=dataset,
        environment=environment, experiment=experiment, since=since, until=until, sort=sort, text=q)
    return job_query_service.list_jobs(p, user, query, limit=limit, offset=offset, all_users=all)


class TagsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    add: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=MAX_TAGS)
    remove: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=MAX_TAGS)


@router.post("/jobs/{job_id}/tags", response_model=TagsOut, responses=errors(*AUTHED, 404))
def change_tags(job_id: JobId, body: TagsBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    """Add the tags in ``add``, then remove those in ``remove``; the job's owner or an admin."""
    return job_query_service.change_tags(p, user, job_id, add=body.add, remove=body.remove)


@router.delete("/jobs/{job_id}/tags/{tag}", response_model=TagsOut, responses=errors(*AUTHED, 404))
def remove_tag(job_id: JobId, tag: Annotated[str, PathParam(max_length=64)], p: PlatformDep,
               user: UserDep) -> dict[str, Any]:
    return job_query_service.change_tags(p, user, job_id, remove=[tag])


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(*AUTHED, 404))
def show(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return jobs_service.show(p, user, job_id)


@router.post("/jobs/{job_id}/stop", response_model=JobOut, responses=errors(*AUTHED, 404, 409))
def stop(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return jobs_service.full(p, p.stop(user, job_id))


@router.post("/jobs/{job_id}/restart", response_model=JobOut, responses=errors(*AUTHED, 404, 409))
def restart(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return jobs_service.full(p, p.restart(user, job_id))


@router.post("/jobs/{job_id}/clone", status_code=201, response_model=JobOut, responses=errors(*AUTHED, 404, 409))
def clone(job_id: JobId, body: CloneBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return jobs_service.full(p, p.clone(user, job_id, resume=body.resume, command=body.command, name=body.name,
                            snapshot=body.snapshot, params=body.params, tags=body.tags))


@router.get("/jobs/{job_id}/events", response_model=EventList, responses=errors(*AUTHED, 404))
def job_events(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return jobs_service.events(p, user, job_id)


@router.get("/jobs/{job_id}/logs", response_model=LogPage, responses=errors(*AUTHED, 404))
def logs(
    job_id: JobId, p: PlatformDep, user: UserDep, attempt: AttemptQuery = None,
    offset: OffsetQuery = 0, limit: Annotated[int, Query(ge=1, le=10000)] = 1000, node: NodeQuery = None,
) -> dict[str, Any]:
    job = store_jobs.get_job(p.db, job_id, user=user)
    a = attempt_of(p, job, attempt)
    if a is None:
        return {"attempt": 0, "lines": [], "next_offset": 0, "done": job.state.is_terminal(), "nodes": job.spec.nodes}
    page = p.cleanup.read_log(a, offset=offset, limit=limit, node=node)
    done = a.state.is_terminal() and page.next_offset >= a.log_count
    if done and a.nnodes > 1:
        # an ended multi-node attempt is done once its other ranks' last lines are in too; read again
        # after: the lines that came with a rank's end count
        done = store_ranks.settled(p.db, a, now=p.scheduler.clock(), grace=p.settings.heartbeat_timeout) and \
            page.next_offset >= store_jobs.attempt_by_number(p.db, job.id, a.number).log_count  # type: ignore[union-attr]
    return {"attempt": a.number, "lines": page.lines, "next_offset": page.next_offset, "done": done,
            "nodes": a.nnodes}


@router.get("/jobs/{job_id}/metrics", responses={**errors(*AUTHED, 404), 200: {
    "description": "each series, as points or as columns",
    "content": {"application/json": {"schema": {"type": "object"}}}}})
def metrics(
    job_id: JobId, p: PlatformDep, user: UserDep, names: Annotated[str | None, Query(max_length=10000)] = None,
    max_points: Annotated[int | None, Query(ge=3, le=100000)] = None,
    layout: Literal["points", "columns"] = "points",
) -> Response:
    from modelyard.server.downsample import SERIES  # numpy: on first use, not at server start

    store_jobs.get_job(p.db, job_id, user=user)
    wanted = [n for n in names.split(",") if n] if names else reports.metric_names(p.db, job_id)
    series = {}
    for name in sorted(set(wanted)):
        # from the columns cache: a series is read whole once, then only its new chunks
        cols = SERIES.columns(p.db, job_id, name)
        if len(cols):
            series[name] = cols.columns(max_points) if layout == "columns" else cols.points(max_points)
    # orjson straight to bytes (numpy columns as they are): FastAPI's encoder walks every value, ~10 us a point
    return Response(orjson.dumps(series, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


@router.get("/jobs/{job_id}/system-metrics", responses=errors(*AUTHED, 404))
def system_metrics(job_id: JobId, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    store_jobs.get_job(p.db, job_id, user=user)
    return {"samples": reports.read_system_metrics(p.db, job_id)}


FinalQuery = Annotated[bool, Query(description="only the job's model: the files under final/ (of the latest "
                                              "attempt that has one, unless attempt is given)")]


@router.get("/jobs/{job_id}/outputs", response_model=OutputList, responses=errors(*AUTHED, 404))
def outputs(job_id: JobId, p: PlatformDep, user: UserDep, attempt: AttemptQuery = None,
            final: FinalQuery = False) -> dict[str, Any]:
    return p.outputs.listing(user, job_id, attempt=attempt, final=final)


BINARY = {200: {"description": "the file's bytes",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("/jobs/{job_id}/outputs/{path:path}", response_class=StreamingResponse,
            responses={**BINARY, **errors(*AUTHED, 404)})
async def output_file(job_id: JobId, path: str, p: PlatformDep, user: UserDep,
                      attempt: AttemptQuery = None) -> StreamingResponse:
    key, size = await run_in_threadpool(p.outputs.file_key, user, job_id, path, attempt=attempt)

    def chunks():  # type: ignore[no-untyped-def]
        with p.storage.open(key) as f:
            while block := f.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"Content-Length": str(size)})
