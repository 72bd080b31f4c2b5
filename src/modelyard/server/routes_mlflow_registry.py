"""The MLflow model registry's API (``register_model``, ``log_model(registered_model_name=)``,
aliases, ``load_model("models:/NAME/1")``), under the tracking API's prefixes, in the paths and
forms of the client's ``store/model_registry/rest_store.py``. The logic is in services/registry.py;
a version's files are read through the artifact routes (routes_mlflow_artifacts.py).
"""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from modelyard.server.mlflow_errors import MlflowRoute
from modelyard.server.mlflow_fields import CallerDep, Fields, FieldsDep, PlatformDep, ok
from modelyard.services import registry

router = APIRouter(route_class=MlflowRoute, include_in_schema=False)
MODELS, VERSIONS = "/registered-models", "/model-versions"


def _true(f: Fields, name: str) -> bool:
    value = f.data.get(name)
    return value is True or str(value).lower() == "true"


@router.post(f"{MODELS}/create")
def create_model(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.create_model(p, caller, name=f.text("name"), tags=f.items("tags"),
                                    description=f.text("description")))


@router.get(f"{MODELS}/get")
def get_model(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.get_model(p, caller, f.text("name")))


@router.post(f"{MODELS}/rename")
def rename_model(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.rename_model(p, caller, f.text("name"), f.text("new_name")))


@router.patch(f"{MODELS}/update")
def update_model(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.update_model(p, caller, f.text("name"), f.text("description")))


@router.delete(f"{MODELS}/delete")
def delete_model(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    registry.delete_model(p, caller, f.text("name"))
    return ok()


@router.get(f"{MODELS}/search")
def search_models(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.search_models(p, caller, filter_text=f.text("filter"), order_by=f.items("order_by"),
                                     max_results=f.integer("max_results"), page_token=f.text("page_token")))


@router.api_route(f"{MODELS}/get-latest-versions", methods=["GET", "POST"])
def latest_versions(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.latest_versions(p, caller, f.text("name"), f.items("stages")))


@router.post(f"{MODELS}/set-tag")
def set_model_tag(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    registry.set_model_tag(p, caller, f.text("name"), f.text("key"), f.data.get("value", ""))
    return ok()


@router.delete(f"{MODELS}/delete-tag")
def delete_model_tag(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    registry.delete_model_tag(p, caller, f.text("name"), f.text("key"))
    return ok()


@router.post(f"{MODELS}/alias")
def set_alias(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    registry.set_alias(p, caller, f.text("name"), f.text("alias"), f.text("version"))
    return ok()


@router.delete(f"{MODELS}/alias")
def delete_alias(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    registry.delete_alias(p, caller, f.text("name"), f.text("alias"))
    return ok()


@router.get(f"{MODELS}/alias")
def version_by_alias(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.version_by_alias(p, caller, f.text("name"), f.text("alias")))


@router.post(f"{VERSIONS}/create")
def create_version(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.create_version(p, caller, name=f.text("name"), source=f.text("source"),
                                      run_id=f.text("run_id"), model_id=f.text("model_id"), tags=f.items("tags"),
                                      description=f.text("description")))


@router.get(f"{VERSIONS}/get")
def get_version(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.get_version(p, caller, f.text("name"), f.text("version")))


@router.patch(f"{VERSIONS}/update")
def update_version(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.update_version(p, caller, f.text("name"), f.text("version"), f.text("description")))


@router.delete(f"{VERSIONS}/delete")
def delete_version(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    registry.delete_version(p, caller, f.text("name"), f.text("version"))
    return ok()


@router.get(f"{VERSIONS}/search")
def search_versions(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.search_versions(p, caller, filter_text=f.text("filter"), order_by=f.items("order_by"),
                                       max_results=f.integer("max_results"), page_token=f.text("page_token")))


@router.get(f"{VERSIONS}/get-download-uri")
def download_uri(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.download_uri(p, caller, f.text("name"), f.text("version")))


@router.post(f"{VERSIONS}/transition-stage")
def transition_stage(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    return ok(registry.transition_stage(p, caller, f.text("name"), f.text("version"), f.text("stage"),
                                        _true(f, "archive_existing_versions")))


@router.post(f"{VERSIONS}/set-tag")
def set_version_tag(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    registry.set_version_tag(p, caller, f.text("name"), f.text("version"), f.text("key"), f.data.get("value", ""))
    return ok()


@router.delete(f"{VERSIONS}/delete-tag")
def delete_version_tag(p: PlatformDep, caller: CallerDep, f: FieldsDep) -> Response:
    registry.delete_version_tag(p, caller, f.text("name"), f.text("version"), f.text("key"))
    return ok()
