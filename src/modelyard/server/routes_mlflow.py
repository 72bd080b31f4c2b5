"""The MLflow tracking REST API (README "MLflow"), under ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow``.

The real ``mlflow`` client speaks it unchanged: POST bodies and GET query strings as its
``rest_store.py`` sends them, answers in its JSON, and errors in its own form
``{"error_code", "message"}`` with the status its client maps, so its exceptions read right.
Kept out of our OpenAPI: /api/v1's docs are ours. The logic is in services/runs.py and
services/experiments.py.
"""
from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from modelyard.db.experiments import ACTIVE, DELETED
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.mlflow_auth import MLFLOW_PREFIXES
from modelyard.server.mlflow_errors import MlflowRoute
from modelyard.server.mlflow_fields import CallerDep, Fields, FieldsDep, PlatformDep, ok
from modelyard.services import experiments, runs

PREFIXES = tuple(p.rstrip("/") for p in MLFLOW_PREFIXES)
router = APIRouter(route_class=MlflowRoute, include_in_schema=False)
# the answer for every other path under the prefixes: included after every router, so it shadows none
fallback = APIRouter(include_in_schema=False)


def _run_id(f: Fields) -> str | None:
    return f.text("run_id") or f.text("run_uuid")


# -- experiments ---------------------------------------------------------------------------

@router.post("/experiments/create")
def create_experiment(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(experiments.create(p, caller, f.text("name", required=True), f.tags()))


@router.get("/experiments/get")
def get_experiment(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok({"experiment": experiments.to_dict(experiments.get(p, caller, f.text("experiment_id", required=True)))})


@router.get("/experiments/get-by-name")
def get_experiment_by_name(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(experiments.by_name(p, caller, f.text("experiment_name", required=True)))


@router.api_route("/experiments/search", methods=["GET", "POST"])
def search_experiments(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    limit = f.integer("max_results", 1000)
    if limit is None or not 1 <= limit <= 50000:
        raise ModelyardError(ErrorCode.INVALID, f"max_results is 1 to 50000, not {limit}", field="max_results")
    return ok(experiments.search(p, caller, view=f.view("view_type"), filter_text=f.text("filter"),
                                 order_by=[str(x) for x in f.items("order_by")], max_results=limit,
                                 page_token=f.text("page_token")))


@router.post("/experiments/update")
def update_experiment(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    experiments.rename(p, caller, f.text("experiment_id", required=True), f.text("new_name", required=True))
    return ok()


@router.post("/experiments/delete")
def delete_experiment(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    experiments.set_stage(p, caller, f.text("experiment_id", required=True), DELETED)
    return ok()


@router.post("/experiments/restore")
def restore_experiment(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    experiments.set_stage(p, caller, f.text("experiment_id", required=True), ACTIVE)
    return ok()


@router.post("/experiments/set-experiment-tag")
def set_experiment_tag(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    tag = runs.check_tags({f.text("key", required=True) or "": f.text("value") or ""})
    for key, value in tag.items():
        experiments.set_tag(p, caller, f.text("experiment_id", required=True), key, value)
    return ok()


@router.post("/experiments/delete-experiment-tag")
def delete_experiment_tag(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    experiments.set_tag(p, caller, f.text("experiment_id", required=True), f.text("key", required=True) or "", None)
    return ok()


# -- runs ----------------------------------------------------------------------------------

@router.post("/runs/create")
def create_run(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(runs.create(p, caller, experiment_id=f.text("experiment_id"), run_name=f.text("run_name"),
                          start_time=f.integer("start_time"), tags=f.tags()))


@router.get("/runs/get")
def get_run(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(runs.get(p, caller, _run_id(f)))


@router.post("/runs/update")
def update_run(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(runs.update(p, caller, _run_id(f), status=f.text("status"), end_time=f.integer("end_time"),
                          run_name=f.text("run_name")))


@router.api_route("/runs/search", methods=["GET", "POST"])
def search_runs(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(runs.search(p, caller, experiment_ids=f.items("experiment_ids") or ["0"], filter_text=f.text("filter"),
                          view=f.view("run_view_type"), max_results=f.integer("max_results", 1000) or 0,
                          order_by=[str(x) for x in f.items("order_by")], page_token=f.text("page_token")))


@router.post("/runs/delete")
def delete_run(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    runs.set_deleted(p, caller, _run_id(f), True)
    return ok()


@router.post("/runs/restore")
def restore_run(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    runs.set_deleted(p, caller, _run_id(f), False)
    return ok()


@router.post("/runs/log-metric")
def log_metric(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    metric = {k: f.data.get(k) for k in ("key", "value", "timestamp", "step")}
    runs.log(p, caller, _run_id(f), metrics=[metric])
    return ok()


@router.post("/runs/log-parameter")
def log_param(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    runs.log(p, caller, _run_id(f), params=[{"key": f.data.get("key"), "value": f.data.get("value")}])
    return ok()


@router.post("/runs/set-tag")
def set_tag(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    runs.log(p, caller, _run_id(f), tags=[{"key": f.data.get("key"), "value": f.data.get("value")}])
    return ok()


@router.post("/runs/delete-tag")
def delete_tag(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    runs.delete_tag(p, caller, _run_id(f), f.text("key", required=True))
    return ok()


@router.post("/runs/log-batch")
def log_batch(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    runs.log(p, caller, _run_id(f), metrics=f.items("metrics"), params=f.items("params"), tags=f.items("tags"))
    return ok()


@router.post("/runs/log-inputs")
def log_inputs(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    runs.log_inputs(p, caller, _run_id(f), f.items("datasets"))
    return ok()


@router.get("/metrics/get-history")
def metric_history(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(runs.metric_history(p, caller, _run_id(f), f.text("metric_key", required=True),
                                  max_results=f.integer("max_results"), page_token=f.text("page_token")))


@fallback.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_served(path: str, request: Request) -> Response:
    """What modelyard does not serve (traces, prompts, webhooks, ...), as MLflow's server says it,
    so the client falls back where it can."""
    return Response(orjson.dumps({"error_code": "ENDPOINT_NOT_FOUND",
                                  "message": f"modelyard does not serve {request.method} {request.url.path}"}),
                    status_code=404, media_type="application/json")
