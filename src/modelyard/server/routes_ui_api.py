"""Read endpoints the web UI needs beyond the core API: the queue, latest metric values, zoom, log size.

They are ordinary /api/v1 endpoints (bearer auth, the same ownership rules),
so whatever a page shows can also be read with curl or the client.

- ``GET /queue``: what runs where (with its GPUs), what waits and why (its
  user's quota, fair share order, a resource, a reservation), capacity and use.
- ``GET /metrics/latest?jobs=1,2&name=loss``: each job's last point of a metric,
  and the metric names those jobs have (for the jobs table's metric column).
- ``GET /jobs/{id}/metrics/window?x=step&start=&end=&max_points=``: a metric
  series cut to an x-range, then downsampled: the detail a zoomed chart shows.
- ``GET /jobs/{id}/logs/size?attempt=N``: how many lines an attempt's log has,
  so a viewer can fetch the tail of a long log first.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from modelyard.server.api_models import LogSize
from modelyard.server.api_schema import AUTHED, ID_LIST_PATTERN, AttemptQuery, JobId, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.services.jobs import attempt_of, latest_metrics
from modelyard.services.queue import queue_view
from modelyard.db import jobs as store_jobs
from modelyard.db import ranks as store_ranks
from modelyard.db import reports
from modelyard.db.records import User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]


@router.get("/queue", responses=errors(*AUTHED))
def queue(p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return queue_view(p, user)


@router.get("/metrics/latest", responses=errors(*AUTHED))
def metrics_latest(
    p: PlatformDep, user: UserDep,
    jobs: Annotated[str, Query(pattern=ID_LIST_PATTERN, max_length=4000, description="job ids: 1,2,3")] = "",
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    ids = [int(x) for x in jobs.split(",") if x]  # the pattern let only ASCII digits through
    return latest_metrics(p, user, ids, name)


@router.get("/jobs/{job_id}/metrics/window", responses=errors(*AUTHED, 404))
def metrics_window(
    job_id: JobId, p: PlatformDep, user: UserDep, names: Annotated[str | None, Query(max_length=10000)] = None,
    x: Literal["step", "epoch", "time"] = "step", start: float | None = None, end: float | None = None,
    max_points: Annotated[int, Query(ge=3, le=100000)] = 1000,
) -> dict[str, Any]:
    """Like /jobs/{id}/metrics, cut to ``start <= x <= end`` first (a point without that x is left out)."""
    from modelyard.server.downsample import SERIES, downsample_index, window  # numpy: on first use
    from modelyard.db import series as S

    store_jobs.get_job(p.db, job_id, user=user)
    wanted = [n for n in names.split(",") if n] if names else reports.metric_names(p.db, job_id)
    out = {}
    for name in sorted(set(wanted)):
        inside = window(SERIES.columns(p.db, job_id, name).cols, x, start, end)
        if inside.shape[1]:
            out[name] = S.as_points(inside, downsample_index(inside, max_points))
    return out


@router.get("/jobs/{job_id}/logs/size", response_model=LogSize, responses=errors(*AUTHED, 404))
def log_size(job_id: JobId, p: PlatformDep, user: UserDep, attempt: AttemptQuery = None) -> dict[str, Any]:
    job = store_jobs.get_job(p.db, job_id, user=user)
    a = attempt_of(p, job, attempt)
    if a is None:
        return {"attempt": 0, "lines": 0, "done": job.state.is_terminal()}
    done = store_ranks.settled(p.db, a, now=p.scheduler.clock(), grace=p.settings.heartbeat_timeout)
    return {"attempt": a.number, "lines": a.log_count, "done": done}
