"""MLflow 3's logged models as the tracking API serves them (server/routes_mlflow_models.py, README "MLflow").

``mlflow.<flavor>.log_model`` (and autolog) creates a logged model, uploads its files to the model's
``artifact_location`` and finalizes it READY; ``load_model("models:/m-...")`` reads it back by id,
``load_model("runs:/RUN/NAME")`` by searching the run's experiment for the name.

A model is kept with the run that logged it (its source run: a job, or a run with no process), so
its owner is that run's owner and it is removed with the run. Its files lie with the run's MLflow
artifacts (services/run_artifacts.py, ``mlflow-artifacts:/models/ID/artifacts``), in the attempt
that was the run's when it was created, so they show among the job's outputs under
``mlflow/models/ID/``. Who reaches one is the run's rule: its owner (an admin any by id); another
user's answers as a model that does not exist; a job's run token only the models of its own run.
"""
from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from modelyard.db import experiments as store_experiments
from modelyard.db import logged_models as store
from modelyard.db.logged_models import PENDING, STATUSES, LoggedModel
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.mlflow_search import MODEL_ATTRIBUTES, Clause, OrderKey, parse_filter, parse_key
from modelyard.server.mlflow_auth import Caller
from modelyard.server.platform import Platform
from modelyard.services import experiments, runs
from modelyard.services.run_artifacts import model_artifact_uri

MODEL_ID = re.compile(r"m-[0-9a-f]{32}")
MAX_NAME, MAX_TYPE, MAX_SEARCH = 250, 250, 1000
# MLflow's own rule (mlflow/utils/validation.py _validate_logged_model_name): nothing a path could misread
_BAD_NAME_CHARS = ("/", ":", ".", "%", '"', "'", "\\", "\x00")
_STATUS_PREFIX = "LOGGED_MODEL_"
_STATUS_NUMBERS = {"1": "PENDING", "2": "READY", "3": "UPLOAD_FAILED"}  # the proto's enum values


def _no_model(text: str) -> ModelyardError:
    return ModelyardError(ErrorCode.NOT_FOUND, f"logged model {text!r} not found", field="model_id")


def reach(p: Platform, caller: Caller, model_id: Any, *, allow_deleted: bool = False) -> LoggedModel:
    """The model ``model_id`` if the caller reaches it; any other answers as a model that does not exist."""
    text = "" if model_id is None else str(model_id)
    if not text:
        raise ModelyardError(ErrorCode.INVALID, "missing value for required parameter 'model_id'", field="model_id")
    found = store.get(p.db, text) if MODEL_ID.fullmatch(text) else None
    if found is None or (found.deleted_at is not None and not allow_deleted) \
            or (caller.job_id is not None and found.job_id != caller.job_id) \
            or (found.user_id != caller.user.id and not caller.user.is_admin):
        raise _no_model(text[:80])
    return found


def to_dict(m: LoggedModel) -> dict[str, Any]:
    """MLflow's LoggedModel message: ``info`` and ``data`` (its metrics are logged to its run)."""
    info: dict[str, Any] = {
        "model_id": m.id, "experiment_id": str(m.experiment_id), "name": m.name,
        "creation_timestamp_ms": int(m.created_at * 1000), "last_updated_timestamp_ms": int(m.updated_at * 1000),
        "artifact_uri": model_artifact_uri(m.id), "status": _STATUS_PREFIX + m.status,
        "creator_id": m.user_id, "source_run_id": str(m.job_id),
        "tags": [{"key": k, "value": v} for k, v in sorted(m.tags.items())],
    }
    if m.model_type:
        info["model_type"] = m.model_type
    if m.status_message:
        info["status_message"] = m.status_message
    return {"info": info, "data": {"params": [{"key": k, "value": v} for k, v in sorted(m.params.items())],
                                   "metrics": []}}


def _answer(p: Platform, model_id: str) -> dict[str, Any]:
    found = store.get(p.db, model_id)
    assert found is not None
    return {"model": to_dict(found)}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME \
            or any(c in name for c in _BAD_NAME_CHARS):
        shown = repr(name)[:60]
        raise ModelyardError(ErrorCode.INVALID, f"invalid model name {shown}: a model's name is 1 to {MAX_NAME} "
                             "characters with none of / : . % \" ' \\", field="name")
    return name


def create(p: Platform, caller: Caller, *, experiment_id: str | None, name: str | None, model_type: str | None,
           source_run_id: str | None, params: Sequence[Any], tags: Sequence[Any]) -> dict[str, Any]:
    """A PENDING model of the run ``source_run_id`` (a job's token: its own run only)."""
    if not source_run_id:
        raise ModelyardError(ErrorCode.INVALID, "modelyard keeps a logged model with the run that logged it: "
                             "log it inside a run (mlflow.start_run()), or pass source_run_id", field="source_run_id")
    job = runs.run_job(p, caller, source_run_id)
    exp = experiments.get(p, caller, experiment_id if experiment_id else str(job.experiment_id or 0))
    if exp.lifecycle_stage != store_experiments.ACTIVE:
        raise ModelyardError(ErrorCode.INVALID, f"experiment {exp.id} is deleted; restore it to log models to it",
                             field="experiment_id")
    if model_type is not None and len(model_type) > MAX_TYPE:
        raise ModelyardError(ErrorCode.INVALID, f"model_type is at most {MAX_TYPE} characters", field="model_type")
    if job.has_process and not job.attempt:
        raise ModelyardError(ErrorCode.CONFLICT, f"job {job.id} has not started: a model is kept with an "
                             "attempt's MLflow artifacts, so log it once the job runs")
    model_id = f"m-{uuid.uuid4().hex}"
    now = time.time()
    store.create(p.db, LoggedModel(
        model_id, job.id, job.user_id, exp.id, job.attempt if job.has_process else None,
        check_name(name) if name is not None else f"model-{model_id[2:10]}", model_type, PENDING, None, now, now,
        params=runs.check_pairs(params, "params"), tags=runs.check_pairs(tags, "tags")))
    return _answer(p, model_id)


def get(p: Platform, caller: Caller, model_id: Any, *, allow_deleted: bool = False) -> dict[str, Any]:
    return {"model": to_dict(reach(p, caller, model_id, allow_deleted=allow_deleted))}


def parse_status(value: Any) -> str:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    status = _STATUS_NUMBERS.get(text, text.removeprefix(_STATUS_PREFIX))
    if status not in STATUSES:
        raise ModelyardError(ErrorCode.INVALID, f"status is one of {', '.join(_STATUS_PREFIX + s for s in STATUSES)},"
                             f" not {str(value)[:40]!r}", field="status")
    return status


def finalize(p: Platform, caller: Caller, model_id: Any, status: Any) -> dict[str, Any]:
    if status is None or status == "":
        raise ModelyardError(ErrorCode.INVALID, "missing value for required parameter 'status'", field="status")
    model = reach(p, caller, model_id)
    store.update(p.db, model.id, status=parse_status(status))
    return _answer(p, model.id)


def delete(p: Platform, caller: Caller, model_id: Any) -> None:
    """MLflow's delete: the model leaves get and search; its files stay with its run until the run goes."""
    caller.check_user_call("delete logged models")
    model = reach(p, caller, model_id)
    store.update(p.db, model.id, deleted_at=time.time())


def set_tags(p: Platform, caller: Caller, model_id: Any, tags: Sequence[Any]) -> None:
    model = reach(p, caller, model_id)
    store.change_json(p.db, model.id, "tags", runs.check_pairs(tags, "tags"))


def delete_tag(p: Platform, caller: Caller, model_id: Any, key: Any) -> None:
    model = reach(p, caller, model_id)
    key = runs.check_tag_key(key)
    if key not in model.tags:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"no tag {key!r} on logged model {model.id}", field="tag_key")
    store.change_json(p.db, model.id, "tags", {key: None})


def log_params(p: Platform, caller: Caller, model_id: Any, params: Sequence[Any]) -> None:
    """New parameters are added; one logged again must keep its value (a run's rule)."""
    model = reach(p, caller, model_id)
    fresh = runs.check_pairs(params, "params")
    for key, value in fresh.items():
        if key in model.params and model.params[key] != value:
            raise ModelyardError(ErrorCode.INVALID, f"parameter {key!r} of logged model {model.id} is "
                                 f"{model.params[key]!r}; it cannot be changed to {value!r}", field="params")
    store.change_json(p.db, model.id, "params", fresh, keep_existing=True)


def log_outputs(p: Platform, caller: Caller, run_id: Any, models: Sequence[Any]) -> None:
    """``log_outputs``: the models are outputs of the run (both the caller's; a job's token: its own)."""
    job = runs.run_job(p, caller, run_id)
    outputs: dict[str, int] = {}
    for item in models:
        if not isinstance(item, dict):
            raise ModelyardError(ErrorCode.INVALID, "each of models is {model_id, step}", field="models")
        step = item.get("step", 0)
        try:
            step = int(step or 0)
        except (TypeError, ValueError):
            raise ModelyardError(ErrorCode.INVALID, f"a model output's step must be an integer, not "
                                 f"{str(step)[:40]!r}", field="models") from None
        outputs[reach(p, caller, item.get("model_id")).id] = step
    if outputs:
        store.log_outputs(p.db, job.id, outputs)


# -- search --------------------------------------------------------------------------------

def search(p: Platform, caller: Caller, *, experiment_ids: Sequence[Any], filter_text: str | None,
           order_by: Sequence[Any], max_results: int | None, page_token: str | None) -> dict[str, Any]:
    """The caller's models in ``experiment_ids`` that match (a job's token: its own run's only)."""
    if not experiment_ids:
        raise ModelyardError(ErrorCode.INVALID, "missing value for required parameter 'experiment_ids'",
                             field="experiment_ids")
    if max_results is not None and max_results < 1:
        raise ModelyardError(ErrorCode.INVALID, f"max_results is at least 1, not {max_results}", field="max_results")
    # more than a page asked for: a page, and its token (the client's search_logged_models reads on)
    limit = min(max_results or MAX_SEARCH, MAX_SEARCH)
    ids = [experiments.get(p, caller, None if e is None else str(e)).id for e in experiment_ids]
    try:
        clauses = parse_filter(filter_text, attributes=MODEL_ATTRIBUTES)
        order = [_order_key(o) for o in order_by]
    except ValueError as e:
        raise ModelyardError(ErrorCode.INVALID, f"bad filter or order_by: {e}", field="filter") from None
    found = [m for m in store.search(p.db, user_id=caller.user.id, experiment_ids=ids, only_job=caller.job_id)
             if all(_matches(m, c) for c in clauses)]
    for key in reversed(order):
        found.sort(key=lambda m, k=key: _sort_value(m, k), reverse=not key.ascending)
    offset = experiments.decode_token(page_token)
    out: dict[str, Any] = {"models": [to_dict(m) for m in found[offset:offset + limit]]}
    if len(found) > offset + limit:
        out["next_page_token"] = experiments.encode_token(offset + limit)
    return out


def _order_key(item: Any) -> OrderKey:
    """MLflow's ``{field_name, ascending}`` (a metric's dataset is not kept: refused by name)."""
    if not isinstance(item, dict) or not isinstance(item.get("field_name"), str):
        raise ValueError("each order_by is {field_name, ascending}")
    entity, key = parse_key(item["field_name"], MODEL_ATTRIBUTES)
    return OrderKey(entity, key, item.get("ascending", True) is not False)


def _field(m: LoggedModel, entity: str, key: str) -> Any:
    if entity == "params":
        return m.params.get(key)
    if entity == "tags":
        return m.tags.get(key)
    if entity == "metrics":
        return None  # a model's metrics are its run's (log_model logs them there)
    return {"name": m.name, "model_id": m.id, "status": m.status, "source_run_id": str(m.job_id),
            "model_type": m.model_type, "experiment_id": str(m.experiment_id),
            "creation_time": m.created_at * 1000, "last_update_time": m.updated_at * 1000}[key]


def _matches(m: LoggedModel, clause: Clause) -> bool:
    value = _field(m, clause.entity, clause.key)
    return value is not None and store_experiments.compare(value, clause.op, clause.value)


def _sort_value(m: LoggedModel, key: OrderKey) -> tuple[bool, Any]:
    value = _field(m, key.entity, key.key)
    return (value is None) != (not key.ascending), value if value is not None else 0
