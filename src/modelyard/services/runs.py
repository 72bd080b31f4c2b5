"""MLflow runs as the tracking API serves them (server/routes_mlflow.py, README "MLflow").

Every job is a run (``run_id`` = its id); a script outside any job makes runs with no process
(kind "run"), which it ends itself with update-run. What a run logs enters by db/runs.py, the one
ingest path, so the jobs table, compare and charts see it as they see a job's metric lines.

A user reaches their own runs (an admin, as in /api/v1, any one by id); a job's run token its own
run only, whose state the process's exit decides, not update-run.
"""
from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import exc as sa_exc

from modelyard.db import experiments as store_experiments
from modelyard.db import jobs as store_jobs
from modelyard.db import logged_models as store_models
from modelyard.db import reports
from modelyard.db import run_query
from modelyard.db import runs as ingest
from modelyard.db.records import Job
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs import JobSpec, JobState
from modelyard.jobs.mlflow_search import MLFLOW_STATUS, STATE_OF_END, parse_filter, parse_order_by
from modelyard.server.mlflow_auth import Caller
from modelyard.server.platform import Platform
from modelyard.services import experiments
from modelyard.services.run_artifacts import artifact_uri

RUN_COMMAND = "(no process: an MLflow run, logged from outside modelyard)"
RUN_NAME_TAG, USER_TAG = "mlflow.runName", "mlflow.user"
# MLflow's limits (mlflow/utils/validation.py), and ours where our columns are narrower
MAX_METRICS, MAX_PARAMS_TAGS = 1000, 100
MAX_PARAM_KEY, MAX_METRIC_KEY, MAX_TAG_KEY = 100, 200, 250
MAX_PARAM_VALUE, MAX_TAG_VALUE = 6000, 8000
MAX_SEARCH = 50000
_KEY = re.compile(r"^[/\w.\- :]+$")


def run_job(p: Platform, caller: Caller, run_id: Any) -> Job:
    """The run ``run_id`` if the caller reaches it; any other answers as a run that does not exist."""
    job_id = _run_number(caller, run_id)
    try:
        return store_jobs.get_job(p.db, job_id, user=caller.user)
    except ModelyardError as e:
        if e.code is ErrorCode.NOT_FOUND:
            raise _no_run(str(run_id)) from None
        raise


def _run_number(caller: Caller, run_id: Any) -> int:
    if run_id is None or run_id == "":
        raise ModelyardError(ErrorCode.INVALID, "missing value for required parameter 'run_id'", field="run_id")
    text = str(run_id)
    if not text.isdigit() or len(text) > 18:
        raise _no_run(text)
    if caller.job_id is not None and int(text) != caller.job_id:
        raise _no_run(text)
    return int(text)


def _check_owner(conn: Any, caller: Caller, job_id: int) -> None:
    """In the write's own transaction: one small read, not a whole job (log-metric is called per point)."""
    owner = store_jobs.owner_of(conn, job_id)
    if owner is None or (owner != caller.user.id and not caller.user.is_admin):
        raise _no_run(str(job_id))


def _no_run(text: str) -> ModelyardError:
    return ModelyardError(ErrorCode.NOT_FOUND, f"run {text!r} not found", field="run_id")


# -- reading -------------------------------------------------------------------------------

def info(job: Job) -> dict[str, Any]:
    return {
        "run_id": str(job.id), "run_uuid": str(job.id), "run_name": job.name, "experiment_id": str(job.experiment_id or 0),
        "user_id": job.owner, "status": MLFLOW_STATUS[job.state],
        "start_time": _ms(job.started_at or job.created_at), "end_time": _ms(job.ended_at),
        "artifact_uri": artifact_uri(job.id), "lifecycle_stage": "deleted" if job.run_deleted_at else "active",
    }


def _ms(t: float | None) -> int | None:
    return None if t is None else int(round(t * 1000))


def run_dict(p: Platform, job: Job, data: run_query.RunData, *, inputs: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"info": info(job), "data": {
        "metrics": [{"key": k, "value": m.value, "timestamp": _ms(m.t), "step": m.step or 0}
                    for k, m in sorted(data.metrics.items())],
        "params": [{"key": k, "value": v} for k, v in sorted(data.params.items())],
        "tags": [{"key": k, "value": v} for k, v in sorted(data.tags.items())],
    }}
    if inputs:
        with p.db.read() as conn:
            found = ingest.inputs_of(conn, job.id)
            outputs = store_models.outputs_of(conn, job.id)
        out["inputs"] = {"dataset_inputs": [
            {"dataset": orjson.loads(d.dataset), "tags": orjson.loads(d.tags)} for d in found]}
        out["outputs"] = {"model_outputs": [{"model_id": m, "step": step} for m, step in outputs]}
    return out


def get(p: Platform, caller: Caller, run_id: Any) -> dict[str, Any]:
    job = run_job(p, caller, run_id)
    return {"run": run_dict(p, job, run_query.run_data(p.db, [job.id])[job.id], inputs=True)}


def search(p: Platform, caller: Caller, *, experiment_ids: Sequence[Any], filter_text: str | None,
           view: str, max_results: int, order_by: list[str], page_token: str | None) -> dict[str, Any]:
    """The caller's runs in ``experiment_ids`` that match; a job's token finds its own run only."""
    if max_results < 1 or max_results > MAX_SEARCH:
        raise ModelyardError(ErrorCode.INVALID, f"max_results is 1 to {MAX_SEARCH}, not {max_results}",
                             field="max_results")
    ids = [_experiment(p, caller, e) for e in experiment_ids]
    try:
        clauses, order = parse_filter(filter_text), parse_order_by(order_by)
    except ValueError as e:
        raise ModelyardError(ErrorCode.INVALID, f"bad filter or order_by: {e}", field="filter") from None
    offset = experiments.decode_token(page_token)
    deleted = {"ACTIVE_ONLY": False, "DELETED_ONLY": True, "ALL": None}[view]
    try:
        found = run_query.search(p.db, user_id=caller.user.id, experiment_ids=ids, deleted=deleted, clauses=clauses,
                                 order=order, limit=max_results + 1, offset=offset, only_job=caller.job_id)
    except ValueError as e:
        raise ModelyardError(ErrorCode.INVALID, str(e), field="filter") from None
    page = found[:max_results]
    data, jobs = run_query.run_data(p.db, page), store_jobs.jobs_by_id(p.db, page)
    runs = [run_dict(p, jobs[i], data[i]) for i in page if i in jobs]
    out: dict[str, Any] = {"runs": runs}
    if len(found) > max_results:
        out["next_page_token"] = experiments.encode_token(offset + max_results)
    return out


def _experiment(p: Platform, caller: Caller, text: Any) -> int:
    return experiments.get(p, caller, None if text is None else str(text)).id


def metric_history(p: Platform, caller: Caller, run_id: Any, key: Any, *, max_results: int | None,
                   page_token: str | None) -> dict[str, Any]:
    job = run_job(p, caller, run_id)
    if not isinstance(key, str) or not key:
        raise ModelyardError(ErrorCode.INVALID, "missing value for required parameter 'metric_key'",
                             field="metric_key")
    _last, cols = reports.read_series(p.db, job.id, key)
    value, step, _epoch, t = (c.tolist() for c in cols)
    offset = experiments.decode_token(page_token)
    end = len(value) if max_results is None else min(len(value), offset + max_results)
    points = [{"key": key, "value": value[i], "timestamp": int(round(t[i] * 1000)),
               "step": 0 if math.isnan(step[i]) else int(step[i])} for i in range(offset, end)]
    out: dict[str, Any] = {"metrics": points}
    if end < len(value):
        out["next_page_token"] = experiments.encode_token(end)
    return out


# -- writing -------------------------------------------------------------------------------

def create(p: Platform, caller: Caller, *, experiment_id: Any, run_name: Any, start_time: int | None,
           tags: dict[str, str]) -> dict[str, Any]:
    """A run with no process, RUNNING until its client ends it."""
    caller.check_user_call("create runs")
    exp = experiments.get(p, caller, "0" if experiment_id in (None, "") else str(experiment_id))
    if exp.lifecycle_stage != store_experiments.ACTIVE:
        raise ModelyardError(ErrorCode.INVALID, f"experiment {exp.id} is deleted; restore it to add runs to it",
                             field="experiment_id")
    name = run_name or tags.get(RUN_NAME_TAG) or "run"
    if not isinstance(name, str) or len(name) > 200:
        raise ModelyardError(ErrorCode.INVALID, "a run's name is a string of at most 200 characters", field="run_name")
    tags = check_tags(tags)
    spec = JobSpec(command=RUN_COMMAND, name=name)
    started = start_time / 1000 if start_time else None
    job_id = store_jobs.create_run(p.db, user=caller.user, spec=spec, experiment_id=exp.id or None,
                                   started_at=started, actor=caller.user.name,
                                   tags={**tags, RUN_NAME_TAG: name, USER_TAG: caller.user.name})
    job = store_jobs.get_job(p.db, job_id)
    return {"run": run_dict(p, job, run_query.run_data(p.db, [job_id])[job_id], inputs=True)}


def update(p: Platform, caller: Caller, run_id: Any, *, status: str | None, end_time: int | None,
           run_name: str | None) -> dict[str, Any]:
    """A new name, and for a run with no process its end (FINISHED, FAILED, KILLED). A job's state is
    its process's to decide: the status its client sends is accepted and ignored."""
    job = run_job(p, caller, run_id)
    if run_name:
        _rename(p, job, run_name)
    end = STATE_OF_END.get(status or "")
    if end is not None and job.kind == "run" and not caller.is_job and job.state is JobState.RUNNING:
        if store_jobs.end_run(p.db, job.id, end, ended_at=end_time / 1000 if end_time else None,
                              actor=caller.user.name):
            p.job_ended(job.id, end)
    return {"run_info": info(store_jobs.get_job(p.db, job.id))}


def _rename(p: Platform, job: Job, name: str) -> None:
    if len(name) > 200:
        raise ModelyardError(ErrorCode.INVALID, "a run's name is at most 200 characters", field="run_name")
    store_jobs.update_run(p.db, job.id, name=name)
    with p.db.write() as conn:
        ingest.set_tags(conn, job.id, {RUN_NAME_TAG: name})


def set_deleted(p: Platform, caller: Caller, run_id: Any, deleted: bool) -> None:
    caller.check_user_call("delete or restore runs")
    job = run_job(p, caller, run_id)
    store_jobs.update_run(p.db, job.id, run_deleted_at=time.time() if deleted else None)


def log(p: Platform, caller: Caller, run_id: Any, *, metrics: Sequence[Any] = (), params: Sequence[Any] = (),
        tags: Sequence[Any] = ()) -> None:
    """log-batch (and log-metric, log-parameter, set-tag, each a batch of one): all of it or nothing."""
    if len(metrics) > MAX_METRICS:
        raise _too_many("metrics", len(metrics), MAX_METRICS)
    for what, items in (("params", params), ("tags", tags)):
        if len(items) > MAX_PARAMS_TAGS:
            raise _too_many(what, len(items), MAX_PARAMS_TAGS)
    job_id = _run_number(caller, run_id)
    points = [_point(m) for m in metrics]
    param_map = _pairs(params, "params", MAX_PARAM_KEY, MAX_PARAM_VALUE)
    tag_map = _pairs(tags, "tags", MAX_TAG_KEY, MAX_TAG_VALUE)
    data = ingest.RunData(params=param_map, tags=tag_map, points=points)
    for tries_left in (1, 0):
        try:
            _write(p, caller, job_id, data)
            break
        except sa_exc.IntegrityError:
            # two writers at once logged the same new param or tag (PostgreSQL: neither saw the other's
            # row); once more, the other's row is there to compare with
            if not tries_left:
                raise ModelyardError(ErrorCode.CONFLICT, f"run {job_id} was being written by another "
                                     "call at the same time; log again") from None
    if RUN_NAME_TAG in tag_map:  # MLflow's run name is its tag too
        store_jobs.update_run(p.db, job_id, name=tag_map[RUN_NAME_TAG][:200])


def _write(p: Platform, caller: Caller, job_id: int, data: ingest.RunData) -> None:
    with p.db.write() as conn:
        _check_owner(conn, caller, job_id)
        try:
            ingest.ingest(conn, job_id, (caller.attempt_id or 0) if caller.is_job else 0, data)
        except (ValueError, TypeError) as e:
            raise ModelyardError(ErrorCode.INVALID, str(e), field="metrics") from None


def _too_many(what: str, n: int, limit: int) -> ModelyardError:
    return ModelyardError(ErrorCode.INVALID, f"a batch holds at most {limit} {what}, not {n}", field=what)


def _point(m: Any) -> ingest.Point:
    if not isinstance(m, dict):
        raise ModelyardError(ErrorCode.INVALID, "a metric is {key, value, timestamp, step}", field="metrics")
    key = _key(m.get("key"), "metrics", MAX_METRIC_KEY)
    value = _number(m.get("value"), f"metric {key!r}: value")
    if not math.isfinite(value):
        raise ModelyardError(ErrorCode.INVALID, f"metric {key!r}: the value {value} is not a finite number; "
                             "modelyard stores finite values only", field="metrics")
    stamp = m.get("timestamp")
    t = _number(stamp, f"metric {key!r}: timestamp") / 1000 if stamp not in (None, "") else time.time()
    step = m.get("step")
    step = int(_number(step, f"metric {key!r}: step")) if step not in (None, "") else 0
    return (key, value, step, None, t)


def _number(x: Any, what: str) -> float:
    if isinstance(x, bool):
        x = None
    if isinstance(x, str):  # protobuf's JSON writes int64 and non-finite doubles as strings
        try:
            return float(x)
        except ValueError:
            x = None
    if not isinstance(x, (int, float)):
        raise ModelyardError(ErrorCode.INVALID, f"{what} must be a number", field="metrics")
    return float(x)


def _key(key: Any, what: str, limit: int) -> str:
    if not isinstance(key, str) or not key:
        raise ModelyardError(ErrorCode.INVALID, f"missing value for required parameter 'key' in {what}", field=what)
    if len(key) > limit:
        raise ModelyardError(ErrorCode.INVALID, f"{what[:-1]} name {key[:40]!r}... is {len(key)} characters; "
                             f"the limit is {limit}", field=what)
    if not _KEY.match(key) or ".." in key.split("/") or key.startswith("/"):
        raise ModelyardError(ErrorCode.INVALID, f"invalid {what[:-1]} name {key!r}: names may hold letters, digits, "
                             "underscores, dashes, periods, spaces, colons and slashes", field=what)
    return key


def _pairs(items: Sequence[Any], what: str, key_limit: int, value_limit: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict):
            raise ModelyardError(ErrorCode.INVALID, f"each of {what} is {{key, value}}", field=what)
        key = _key(item.get("key"), what, key_limit)
        value = item.get("value")
        value = "" if value is None else value
        if not isinstance(value, str):
            value = str(value)
        if len(value) > value_limit:
            raise ModelyardError(ErrorCode.INVALID, f"the value of {what[:-1]} {key!r} is {len(value)} characters; "
                                 f"the limit is {value_limit}", field=what)
        if what == "params" and key in out and out[key] != value:
            raise ModelyardError(ErrorCode.INVALID, f"param {key!r} is given twice with different values", field=what)
        out[key] = value
    return out


def check_tags(tags: dict[str, Any]) -> dict[str, str]:
    return _pairs([{"key": k, "value": v} for k, v in tags.items()], "tags", MAX_TAG_KEY, MAX_TAG_VALUE)


def check_pairs(items: Sequence[Any], what: str) -> dict[str, str]:
    """``[{key, value}, ...]`` of ``what`` ("params" or "tags") under a run's limits, as a dict."""
    if len(items) > MAX_PARAMS_TAGS:
        raise _too_many(what, len(items), MAX_PARAMS_TAGS)
    if what == "params":
        return _pairs(items, what, MAX_PARAM_KEY, MAX_PARAM_VALUE)
    return _pairs(items, what, MAX_TAG_KEY, MAX_TAG_VALUE)


def check_tag_key(key: Any) -> str:
    return _key(key, "tags", MAX_TAG_KEY)


def delete_tag(p: Platform, caller: Caller, run_id: Any, key: Any) -> None:
    job = run_job(p, caller, run_id)
    with p.db.write() as conn:
        if not ingest.delete_tag(conn, job.id, _key(key, "tags", MAX_TAG_KEY)):
            raise ModelyardError(ErrorCode.NOT_FOUND, f"no tag {key!r} on run {job.id}", field="key")


def log_inputs(p: Platform, caller: Caller, run_id: Any, datasets: Sequence[Any]) -> None:
    job = run_job(p, caller, run_id)
    found = []
    for d in datasets:
        ds = d.get("dataset") if isinstance(d, dict) else None
        if not isinstance(ds, dict) or not isinstance(ds.get("name"), str) or not isinstance(ds.get("digest"), str) \
                or len(ds["name"]) > 500 or len(ds["digest"]) > 64:
            raise ModelyardError(ErrorCode.INVALID, "each dataset input is {dataset: {name, digest, source_type, "
                                 "source, ...}, tags}: a name (at most 500 characters) and a digest (at most 64)",
                                 field="datasets")
        found.append(ingest.DatasetInput(ds["name"], ds["digest"], orjson.dumps(ds).decode(),
                                         orjson.dumps(d.get("tags") or []).decode()))
    with p.db.write() as conn:
        ingest.log_inputs(conn, job.id, found, now=time.time())
