"""Comparing jobs side by side: their parameters, how their specs differ, each metric's last and
best value, and their durations. The API (``GET /compare``, ``/compare.csv``), the CLI
(``modelyard compare``) and the page ``/ui/compare`` all show what ``compare`` returns.

Nomenclature: a *field* is one leaf of a spec, flattened to a dotted name (``resources.gpus``,
``env.SEED``, ``command``); a *difference* is a field whose value is not the same in every job
compared. A metric's *best* is its minimum when its name says it is an error to shrink
(``best_mode`` "min": loss, error, mse, ...), else its maximum.

Only jobs the caller may read are compared: another user's job is not found, as everywhere.
A metric series is summarised chunk by chunk as the database hands the chunks over, so a
million-point series never becomes one list.
"""
from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from modelyard.db import jobs as store_jobs
from modelyard.db import reports
from modelyard.db.engine import Database
from modelyard.db.records import Job, User
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.spec import MASK

if TYPE_CHECKING:
    import numpy as np

MAX_IDS = 50
MAX_ID = 2**53  # as api_schema.MAX_ID: an id the database can hold
# a metric named with one of these is an error: smaller is better
MIN_WORDS = ("loss", "error", "err", "mse", "mae", "perplexity", "wer")
# shown elsewhere on the page (params, tags, the name heading) or a client-side path, not a difference
NOT_COMPARED = frozenset({"params", "tags", "name", "workdir"})
# a spreadsheet runs a cell that starts with one of these as a formula (CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def parse_ids(text: str | None) -> list[int]:
    """``"3,5,7"`` as job ids, in order, each once; INVALID naming the first bad one."""
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not parts:
        raise ModelyardError(ErrorCode.INVALID, "name the jobs to compare, e.g. ids=3,5,7", field="ids")
    ids: list[int] = []
    for part in parts:
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= MAX_ID:
            raise ModelyardError(ErrorCode.INVALID, f"{part[:40]!r} is not a job id", field="ids")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) > MAX_IDS:
        raise ModelyardError(ErrorCode.INVALID, f"{len(ids)} jobs; at most {MAX_IDS} can be compared at once",
                             field="ids")
    return ids


def best_mode(name: str) -> str:
    lowered = name.lower()
    return "min" if any(word in lowered for word in MIN_WORDS) else "max"


@dataclass(frozen=True)
class MetricSummary:
    last: float
    last_step: int | None
    best: float
    best_step: int | None
    points: int


def summarise(chunks: Iterable[np.ndarray], mode: str) -> MetricSummary | None:
    """Last and best point of a series given as (4, n) chunks in order; None for no points.

    The first point reaching the best value is its best (a later tie does not move it)."""
    import numpy as np  # on first use: numpy is no part of a server start (db/reports.py)

    pick = np.argmin if mode == "min" else np.argmax
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)
    best: tuple[float, float] | None = None
    last: tuple[float, float] | None = None
    points = 0
    for cols in chunks:
        if not cols.shape[1]:
            continue
        i = int(pick(cols[0]))
        if best is None or better(cols[0, i], best[0]):
            best = (float(cols[0, i]), float(cols[1, i]))
        last = (float(cols[0, -1]), float(cols[1, -1]))
        points += int(cols.shape[1])
    if best is None or last is None:
        return None
    return MetricSummary(last[0], _step(last[1]), best[0], _step(best[1]), points)


def _step(x: float) -> int | None:
    return None if math.isnan(x) else int(x)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted names; lists and scalars are leaves."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    return out


def spec_fields(job: Job) -> dict[str, Any]:
    """The job's spec flattened, with the version of its dataset it was pinned to; a secret only as MASK."""
    dumped = job.spec.model_dump(mode="json")  # inline secret values come out as MASK already
    dumped["secrets"] = {name: MASK for name in dumped.get("secrets") or {}}
    dumped["dataset"] = job.dataset or dumped.get("dataset")
    return {k: v for k, v in flatten({k: v for k, v in dumped.items() if k not in NOT_COMPARED}).items() if k}


def differences(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each field whose value differs between the jobs (a field one job lacks counts as None there)."""
    names = sorted({name for f in fields for name in f})
    out = []
    for name in names:
        values = [f.get(name) for f in fields]
        if any(v != values[0] for v in values[1:]):
            out.append({"field": name, "values": values})
    return out


def compare(db: Database, user: User, ids: list[int], *, now: float | None = None) -> dict[str, Any]:
    """What comparing jobs ``ids`` shows; NOT_FOUND for one the user may not read (or nobody has)."""
    now = time.time() if now is None else now
    jobs = [store_jobs.get_job(db, job_id, user=user) for job_id in ids]
    rows = [_job_row(job, now) for job in jobs]
    param_names = sorted({name for job in jobs for name in job.params})
    return {
        "ids": ids,
        "jobs": rows,
        "params": {"names": param_names,
                   "differ": [n for n in param_names if len({_key(j.params.get(n)) for j in jobs}) > 1]},
        "spec_differences": differences([spec_fields(job) for job in jobs]),
        "metrics": _metrics(db, ids),
    }


def _key(value: Any) -> tuple[str, Any]:
    # 1 and True (and 1.0) are equal in Python, not as parameters
    return (type(value).__name__, value)


def _job_row(job: Job, now: float) -> dict[str, Any]:
    spec = job.spec
    started, ended = job.started_at, job.ended_at
    return {
        "id": job.id, "name": job.name, "state": job.state.value, "owner": job.owner,
        "params": dict(job.params), "tags": list(job.tags),  # as they are now, edited after submit too
        "started_at": started, "ended_at": ended,
        "duration": None if started is None else max(0.0, (ended or now) - started),
        "dataset": job.dataset or spec.dataset, "environment": job.environment, "image": spec.image,
        "requirements": spec.requirements is not None, "resources": job.resources.model_dump(),
        "nodes": spec.nodes, "attempts": job.attempt,
    }


def _metrics(db: Database, ids: list[int]) -> list[dict[str, Any]]:
    out = []
    for name in reports.names_of_jobs(db, ids):
        mode = best_mode(name)
        per_job = [summarise(reports.iter_series(db, job_id, name), mode) for job_id in ids]
        out.append({"name": name, "best_mode": mode, "jobs": [asdict(s) if s else None for s in per_job]})
    return out


# -- CSV -------------------------------------------------------------------------------------------


def to_csv(data: dict[str, Any]) -> str:
    """One row per job: id, name, state, owner, duration (seconds), ``param.NAME`` per parameter,
    ``METRIC.last`` and ``METRIC.best`` per metric."""
    params, metrics = data["params"]["names"], data["metrics"]
    header = ["id", "name", "state", "owner", "duration"] + [f"param.{n}" for n in params]
    header += [f"{m['name']}.{kind}" for m in metrics for kind in ("last", "best")]
    buf = io.StringIO()
    writer = csv.writer(buf)  # RFC 4180 line ends: with "\n" alone, a "\r" inside a cell goes unquoted
    writer.writerow([_cell(h) for h in header])
    for i, job in enumerate(data["jobs"]):
        row: list[Any] = [job["id"], job["name"], job["state"], job["owner"], _seconds(job["duration"])]
        row += [_param(job["params"].get(n)) for n in params]
        for m in metrics:
            s = m["jobs"][i]
            row += [s["last"], s["best"]] if s else ["", ""]
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def _seconds(duration: float | None) -> str:
    return "" if duration is None else f"{duration:.3f}"


def _param(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value  # shown as text, never run as a formula
    return value
