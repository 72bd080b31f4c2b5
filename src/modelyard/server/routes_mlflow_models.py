"""MLflow 3's logged-models API (``mlflow.<flavor>.log_model``, autolog, ``load_model``), under the
tracking API's prefixes, in the paths and forms of the client's ``rest_store.py``. The logic is in
services/logged_models.py; a model's files go through the artifact routes (routes_mlflow_artifacts.py).
"""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from modelyard.server.mlflow_errors import MlflowRoute
from modelyard.server.mlflow_fields import CallerDep, FieldsDep, PlatformDep, ok
from modelyard.services import logged_models as models

router = APIRouter(route_class=MlflowRoute, include_in_schema=False)


@router.post("/logged-models")
def create(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(models.create(p, caller, experiment_id=f.text("experiment_id"), name=f.text("name"),
                            model_type=f.text("model_type"), source_run_id=f.text("source_run_id"),
                            params=f.items("params"), tags=f.items("tags")))


@router.post("/logged-models/search")
def search(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(models.search(p, caller, experiment_ids=f.items("experiment_ids"), filter_text=f.text("filter"),
                            order_by=f.items("order_by"), max_results=f.integer("max_results"),
                            page_token=f.text("page_token")))


@router.get("/logged-models/{model_id}")
def get(model_id: str, p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(models.get(p, caller, model_id, allow_deleted=(f.text("allow_deleted") or "").lower() == "true"))


@router.patch("/logged-models/{model_id}")
def finalize(model_id: str, p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(models.finalize(p, caller, model_id, f.data.get("status")))


@router.delete("/logged-models/{model_id}")
def delete(model_id: str, p: PlatformDep, caller: CallerDep) -> Response:
    models.delete(p, caller, model_id)
    return ok()


@router.patch("/logged-models/{model_id}/tags")
def set_tags(model_id: str, p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    models.set_tags(p, caller, model_id, f.items("tags"))
    return ok()


@router.delete("/logged-models/{model_id}/tags/{tag_key:path}")
def delete_tag(model_id: str, tag_key: str, p: PlatformDep, caller: CallerDep) -> Response:
    models.delete_tag(p, caller, model_id, tag_key)
    return ok()


@router.post("/logged-models/{model_id}/params")
def log_params(model_id: str, p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    models.log_params(p, caller, model_id, f.items("params"))
    return ok()


@router.post("/runs/outputs")
def log_outputs(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    models.log_outputs(p, caller, f.text("run_id"), f.items("models"))
    return ok()
