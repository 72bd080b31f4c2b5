"""The MLflow model registry as the tracking API serves it (server/routes_mlflow_registry.py, README
"MLflow model registry"): registered models, their versions, tags, aliases and (deprecated) stages.

Nomenclature: a *registered model* is a name of its owner's (``digits``); a *version* of it is one
model registered under that name (``models:/digits/1``); an *alias* names one version
(``models:/digits@champion``). Each user's names are their own: a name is looked up among the
caller's registered models only, so another user's answers as one that does not exist.

A version's files are copied, when it is registered, from its source (a logged model, or a folder
of a run's artifacts) into the registry's own prefix of the artifact store (artifacts/keys.py
``registry_prefix``), and its download URI points there. So removing the job or run it came from
(``rm``, retention) never leaves a version pointing at deleted files, and no removal has to ask
about the registry first; the files go when the version (or its registered model) is deleted.

A job's run token may create its owner's registered model (log_model(registered_model_name=) does
when the name is new) and register versions from its own run's models and artifacts; nothing else.
"""
from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from modelyard.artifacts.keys import registry_prefix
from modelyard.db import registry as store
from modelyard.db.experiments import compare
from modelyard.db.registry import NONE_STAGE, STAGES, ModelVersion, RegisteredModel
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.mlflow_search import Clause, OrderKey, parse_filter, parse_order_by
from modelyard.server.mlflow_auth import Caller
from modelyard.server.platform import Platform
from modelyard.services import experiments, runs
from modelyard.services import logged_models

MAX_NAME, MAX_DESCRIPTION, MAX_SEARCH, MAX_VERSION_SEARCH = 250, 5000, 1000, 200_000
_BAD_NAME_CHARS = ("/", ":", "%", "\\", "\x00")  # a models:/ URI could not name it
_ALIAS = re.compile(r"[\w\-]{1,255}")
_RESERVED_ALIAS = re.compile(r"latest|v\d+", re.I)  # models:/NAME/latest and version-like names mean otherwise
_MODEL_SOURCE = re.compile(r"(?:models:/|mlflow-artifacts:/models/)(m-[0-9a-f]{32})(?:/artifacts)?/?")
_RUN_SOURCE = re.compile(r"(?:runs:/|mlflow-artifacts:/runs/)(\d{1,18})(?:/artifacts)?(?:/(.*))?", re.S)
REGISTERED_MODEL_ATTRIBUTES = {"name": "name", "creation_timestamp": "creation_time",
                               "last_updated_timestamp": "last_update_time"}
VERSION_ATTRIBUTES = {"name": "name", "version": "version", "version_number": "version", "run_id": "run_id",
                      "source": "source", "source_path": "source", "model_id": "model_id",
                      "current_stage": "current_stage", "creation_timestamp": "creation_time",
                      "last_updated_timestamp": "last_update_time"}


def no_model(name: str) -> ModelyardError:
    """The one answer for a name the caller has no registered model of (another user's included)."""
    return ModelyardError(ErrorCode.NOT_FOUND, f"registered model {name[:250]!r} not found", field="name")


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ModelyardError(ErrorCode.INVALID, f"missing value for required parameter {field!r}", field=field)
    if len(name) > MAX_NAME or any(c in name for c in _BAD_NAME_CHARS) or name != name.strip():
        raise ModelyardError(ErrorCode.INVALID, f"invalid registered model name {name[:60]!r}: 1 to {MAX_NAME} "
                             "characters, no / : % \\ and no space at either end", field=field)
    return name


def _description(text: str | None) -> str | None:
    if text is not None and len(text) > MAX_DESCRIPTION:
        raise ModelyardError(ErrorCode.INVALID, f"description is at most {MAX_DESCRIPTION} characters",
                             field="description")
    return text


def reach(p: Platform, caller: Caller, name: Any) -> RegisteredModel:
    """The caller's registered model ``name`` (a job's token: refused, its calls are create only)."""
    caller.check_user_call("read or change the model registry")
    found = store.get_model(p.db, caller.user.id, check_name(name))
    if found is None:
        raise no_model(name)
    return found


def _version_number(version: Any) -> int:
    text = "" if version is None else str(version)
    if not text:
        raise ModelyardError(ErrorCode.INVALID, "missing value for required parameter 'version'", field="version")
    if not text.isdigit() or len(text) > 9:
        raise ModelyardError(ErrorCode.INVALID, f"version must be a positive integer, not {text[:40]!r}",
                             field="version")
    return int(text)


def reach_version(p: Platform, caller: Caller, name: Any, version: Any) -> tuple[RegisteredModel, ModelVersion]:
    model = reach(p, caller, name)
    number = _version_number(version)
    found = store.get_version(p.db, model.id, number)
    if found is None:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"model version {number} of registered model "
                             f"{model.name!r} not found", field="version")
    return model, found


# -- answers -------------------------------------------------------------------------------

def _pairs(items: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(items.items())]


def version_to_dict(model: RegisteredModel, v: ModelVersion, owner: str) -> dict[str, Any]:
    """MLflow's ModelVersion message."""
    out: dict[str, Any] = {
        "name": model.name, "version": str(v.version), "creation_timestamp": int(v.created_at * 1000),
        "last_updated_timestamp": int(v.updated_at * 1000), "user_id": owner, "current_stage": v.stage,
        "source": v.source, "status": "READY", "tags": _pairs(v.tags),
        "aliases": sorted(a for a, n in model.aliases.items() if n == v.version),
    }
    for key, value in (("description", v.description), ("model_id", v.model_id),
                       ("run_id", None if v.job_id is None else str(v.job_id))):
        if value is not None:
            out[key] = value
    return out


def _latest(versions: Sequence[ModelVersion], stages: Sequence[str] | None = None) -> list[ModelVersion]:
    """The newest version in each stage (``stages``: those only), as get-latest-versions gives them."""
    newest: dict[str, ModelVersion] = {}
    for v in versions:
        if (stages is None or v.stage in stages) and (v.stage not in newest or v.version > newest[v.stage].version):
            newest[v.stage] = v
    return sorted(newest.values(), key=lambda v: v.version)


def model_to_dict(p: Platform, model: RegisteredModel, owner: str,
                  versions: list[ModelVersion] | None = None) -> dict[str, Any]:
    """MLflow's RegisteredModel message; ``versions``: the model's, when the caller read them already."""
    if versions is None:
        versions = store.versions_of(p.db, [model.id])
    out: dict[str, Any] = {
        "name": model.name, "creation_timestamp": int(model.created_at * 1000),
        "last_updated_timestamp": int(model.updated_at * 1000), "user_id": owner, "tags": _pairs(model.tags),
        "aliases": [{"alias": a, "version": str(n)} for a, n in sorted(model.aliases.items())],
        "latest_versions": [version_to_dict(model, v, owner) for v in _latest(versions)],
    }
    if model.description is not None:
        out["description"] = model.description
    return out


def _model_answer(p: Platform, caller: Caller, model_id: int) -> dict[str, Any]:
    found = store.get_model_by_id(p.db, model_id)
    assert found is not None
    return {"registered_model": model_to_dict(p, found, caller.user.name)}


def _version_answer(p: Platform, caller: Caller, model_id: int, version: int) -> dict[str, Any]:
    model, found = store.get_model_by_id(p.db, model_id), store.get_version(p.db, model_id, version)
    assert model is not None and found is not None
    return {"model_version": version_to_dict(model, found, caller.user.name)}


# -- registered models ---------------------------------------------------------------------

def create_model(p: Platform, caller: Caller, *, name: Any, tags: Sequence[Any],
                 description: str | None) -> dict[str, Any]:
    """A new registered model of the caller's (a job's token: of its owner's, as log_model(registered_model_name=))."""
    model_id = store.create_model(p.db, caller.user.id, check_name(name), description=_description(description),
                                  tags=runs.check_pairs(tags, "tags"))
    if caller.is_job:
        return {"registered_model": {"name": name}}  # the job may create it; reading it is its owner's
    return _model_answer(p, caller, model_id)


def get_model(p: Platform, caller: Caller, name: Any) -> dict[str, Any]:
    return {"registered_model": model_to_dict(p, reach(p, caller, name), caller.user.name)}


def rename_model(p: Platform, caller: Caller, name: Any, new_name: Any) -> dict[str, Any]:
    model = reach(p, caller, name)
    store.update_model(p.db, model.id, name=check_name(new_name, "new_name"))
    return _model_answer(p, caller, model.id)


def update_model(p: Platform, caller: Caller, name: Any, description: str | None) -> dict[str, Any]:
    model = reach(p, caller, name)
    store.update_model(p.db, model.id, description=_description(description))
    return _model_answer(p, caller, model.id)


def delete_model(p: Platform, caller: Caller, name: Any) -> None:
    """The registered model, its versions and their files."""
    model = reach(p, caller, name)
    store.delete_model(p.db, model.id)
    p.storage.delete_prefix(registry_prefix(model.id))


def set_model_tag(p: Platform, caller: Caller, name: Any, key: Any, value: Any) -> None:
    model = reach(p, caller, name)
    store.change_model_json(p.db, model.id, "tags", runs.check_pairs([{"key": key, "value": value}], "tags"))


def delete_model_tag(p: Platform, caller: Caller, name: Any, key: Any) -> None:
    model = reach(p, caller, name)
    key = runs.check_tag_key(key)
    if key not in model.tags:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"no tag {key!r} on registered model {model.name!r}", field="key")
    store.change_model_json(p.db, model.id, "tags", {key: None})


def latest_versions(p: Platform, caller: Caller, name: Any, stages: Sequence[Any]) -> dict[str, Any]:
    model = reach(p, caller, name)
    wanted = [_stage(s) for s in stages] or None
    return {"model_versions": [version_to_dict(model, v, caller.user.name)
                               for v in _latest(store.versions_of(p.db, [model.id]), wanted)]}


# -- aliases -------------------------------------------------------------------------------

def _alias(alias: Any) -> str:
    text = "" if alias is None else str(alias)
    if not text:
        raise ModelyardError(ErrorCode.INVALID, "missing value for required parameter 'alias'", field="alias")
    if not _ALIAS.fullmatch(text) or _RESERVED_ALIAS.fullmatch(text):
        raise ModelyardError(ErrorCode.INVALID, f"invalid alias {text[:60]!r}: 1 to 255 letters, digits, '_' "
                             "or '-', and not 'latest' or v<number>", field="alias")
    return text


def set_alias(p: Platform, caller: Caller, name: Any, alias: Any, version: Any) -> None:
    model, found = reach_version(p, caller, name, version)
    store.change_model_json(p.db, model.id, "aliases", {_alias(alias): found.version})


def delete_alias(p: Platform, caller: Caller, name: Any, alias: Any) -> None:
    model = reach(p, caller, name)
    alias = _alias(alias)
    if alias not in model.aliases:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"no alias {alias!r} on registered model {model.name!r}",
                             field="alias")
    store.change_model_json(p.db, model.id, "aliases", {alias: None})


def version_by_alias(p: Platform, caller: Caller, name: Any, alias: Any) -> dict[str, Any]:
    model = reach(p, caller, name)
    alias = _alias(alias)
    if alias not in model.aliases:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"no alias {alias!r} on registered model {model.name!r}",
                             field="alias")
    return _version_answer(p, caller, model.id, model.aliases[alias])


# -- versions ------------------------------------------------------------------------------

def _source_path(source: str | None, model_id: str | None) -> tuple[str, str | None]:
    """The artifact path (services/run_artifacts.py) a version's files are copied from, and its logged model."""
    if model_id:
        return f"models/{model_id}/artifacts", model_id
    text = source or ""
    if m := _MODEL_SOURCE.fullmatch(text):
        return f"models/{m.group(1)}/artifacts", m.group(1)
    if m := _RUN_SOURCE.fullmatch(text):
        rest = (m.group(2) or "").strip("/")
        return (f"runs/{m.group(1)}/artifacts/{rest}" if rest else f"runs/{m.group(1)}/artifacts"), None
    if not text:
        raise ModelyardError(ErrorCode.INVALID, "missing value for required parameter 'source'", field="source")
    raise ModelyardError(ErrorCode.INVALID, f"source {text[:100]!r} is not a model of this server: "
                         "models:/<model id>, runs:/<run id>/<path> or mlflow-artifacts:/...", field="source")


def create_version(p: Platform, caller: Caller, *, name: Any, source: str | None, run_id: str | None,
                   model_id: str | None, tags: Sequence[Any], description: str | None) -> dict[str, Any]:
    """Register the next version of ``name`` from ``source``: its files copied into the registry.
    A job's token: of its owner's model, from its own run only."""
    check_name(name)
    model = store.get_model(p.db, caller.user.id, name)
    if model is None:
        raise no_model(name)
    path, logged = _source_path(source, model_id)
    if logged is not None:
        logged = logged_models.reach(p, caller, logged).id  # a job's token: its own run's models only
    at = p.run_artifacts.locate(caller.user, path, only_run=caller.job_id, folder=True)
    assert at.job is not None
    if run_id and run_id != str(at.job.id):
        raise ModelyardError(ErrorCode.INVALID, f"run_id {run_id[:40]!r} is not the run of source "
                             f"{(source or path)[:100]!r} (run {at.job.id})", field="run_id")
    if (at.attempt is None and at.job.has_process) or not p.storage.list(at.key):
        raise ModelyardError(ErrorCode.INVALID, f"source {(source or path)[:100]!r} has no files: log the model "
                             "before registering it", field="source")
    fresh = runs.check_pairs(tags, "tags")
    description = _description(description)  # before a number is taken and the files copied
    number = store.next_version(p.db, model.id)
    key = registry_prefix(model.id, number)
    now = time.time()
    try:
        p.storage.copy_prefix(at.key, key)
        store.add_version(p.db, ModelVersion(model.id, number, source or f"models:/{logged}", at.job.id, logged,
                                             description, NONE_STAGE, now, now, fresh))
    except BaseException:
        p.storage.delete_prefix(key)
        raise
    answer = _version_answer(p, caller, model.id, number)
    if caller.is_job:  # what it registered, and no more of its owner's registry
        answer["model_version"].pop("aliases", None)
    return answer


def get_version(p: Platform, caller: Caller, name: Any, version: Any) -> dict[str, Any]:
    model, found = reach_version(p, caller, name, version)
    return {"model_version": version_to_dict(model, found, caller.user.name)}


def update_version(p: Platform, caller: Caller, name: Any, version: Any, description: str | None) -> dict[str, Any]:
    model, found = reach_version(p, caller, name, version)
    store.update_version(p.db, model.id, found.version, description=_description(description))
    return _version_answer(p, caller, model.id, found.version)


def delete_version(p: Platform, caller: Caller, name: Any, version: Any) -> None:
    """The version, its aliases and its files."""
    model, found = reach_version(p, caller, name, version)
    store.delete_version(p.db, model.id, found.version)
    p.storage.delete_prefix(registry_prefix(model.id, found.version))


def download_uri(p: Platform, caller: Caller, name: Any, version: Any) -> dict[str, Any]:
    model, found = reach_version(p, caller, name, version)
    return {"artifact_uri": f"mlflow-artifacts:/{registry_prefix(model.id, found.version)}"}


def set_version_tag(p: Platform, caller: Caller, name: Any, version: Any, key: Any, value: Any) -> None:
    model, found = reach_version(p, caller, name, version)
    store.change_version_tags(p.db, model.id, found.version,
                              runs.check_pairs([{"key": key, "value": value}], "tags"))


def delete_version_tag(p: Platform, caller: Caller, name: Any, version: Any, key: Any) -> None:
    model, found = reach_version(p, caller, name, version)
    key = runs.check_tag_key(key)
    if key not in found.tags:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"no tag {key!r} on version {found.version} of registered "
                             f"model {model.name!r}", field="key")
    store.change_version_tags(p.db, model.id, found.version, {key: None})


def _stage(value: Any) -> str:
    text = "" if value is None else str(value)
    for stage in STAGES:
        if text.lower() == stage.lower():
            return stage
    raise ModelyardError(ErrorCode.INVALID, f"stage is one of {', '.join(STAGES)}, not {text[:40]!r}",
                         field="stage")


def transition_stage(p: Platform, caller: Caller, name: Any, version: Any, stage: Any,
                     archive_existing: bool) -> dict[str, Any]:
    """MLflow's deprecated stages, kept as it keeps them (aliases are the way forward)."""
    model, found = reach_version(p, caller, name, version)
    new = _stage(stage)
    store.update_version(p.db, model.id, found.version, stage=new)
    if archive_existing and new in ("Staging", "Production"):
        store.archive_stage(p.db, model.id, new, besides=found.version)
    return _version_answer(p, caller, model.id, found.version)


# -- search --------------------------------------------------------------------------------

def _page(items: list[Any], page_token: str | None, max_results: int | None, default: int,
          most: int) -> tuple[list[Any], str | None]:
    if max_results is not None and not 1 <= max_results <= most:
        raise ModelyardError(ErrorCode.INVALID, f"max_results is 1 to {most}, not {max_results}",
                             field="max_results")
    limit = max_results or default
    offset = experiments.decode_token(page_token)
    more = len(items) > offset + limit
    return items[offset:offset + limit], experiments.encode_token(offset + limit) if more else None


def _parsed(filter_text: str | None, order_by: Sequence[Any],
            attributes: dict[str, str]) -> tuple[list[Clause], list[OrderKey]]:
    try:
        clauses = parse_filter(filter_text, attributes=attributes)
        order = parse_order_by([str(o) for o in order_by], attributes=attributes)
    except ValueError as e:
        raise ModelyardError(ErrorCode.INVALID, f"bad filter or order_by: {e}", field="filter") from None
    if any(c.entity not in ("attributes", "tags") for c in clauses):
        raise ModelyardError(ErrorCode.INVALID, "the registry's filter compares attributes and tags only",
                             field="filter")
    return clauses, order


def _sorted(items: list[Any], order: list[OrderKey], value: Any) -> list[Any]:
    def sort_key(x: Any, k: OrderKey) -> tuple[bool, Any]:
        v = value(x, k.entity, k.key)
        return v is None, 0 if v is None else v  # an empty tag is "", never 0: no str against int

    for key in reversed(order):
        items.sort(key=lambda x, k=key: sort_key(x, k), reverse=not key.ascending)
    return items


def _model_field(m: RegisteredModel, entity: str, key: str) -> Any:
    if entity == "tags":
        return m.tags.get(key)
    return {"name": m.name, "creation_time": m.created_at * 1000, "last_update_time": m.updated_at * 1000}.get(key)


def search_models(p: Platform, caller: Caller, *, filter_text: str | None, order_by: Sequence[Any],
                  max_results: int | None, page_token: str | None) -> dict[str, Any]:
    caller.check_user_call("read or change the model registry")
    clauses, order = _parsed(filter_text, order_by, REGISTERED_MODEL_ATTRIBUTES)
    found = [m for m in store.models_of(p.db, caller.user.id)
             if all(_holds(_model_field(m, c.entity, c.key), c) for c in clauses)]
    page, token = _page(_sorted(found, order, _model_field), page_token, max_results, 100, MAX_SEARCH)
    versions: dict[int, list[ModelVersion]] = {m.id: [] for m in page}
    for v in store.versions_of(p.db, list(versions)) if page else []:  # one read for the page, not one a model
        versions[v.registered_model_id].append(v)
    out: dict[str, Any] = {"registered_models": [model_to_dict(p, m, caller.user.name, versions[m.id])
                                                 for m in page]}
    if token:
        out["next_page_token"] = token
    return out


def _holds(value: Any, clause: Clause) -> bool:
    if isinstance(value, float) and isinstance(clause.value, str) and value.is_integer():
        value = str(int(value))  # version = '2', as the client quotes it
    if value is None:  # a missing tag differs from any value: the client adds tag.`mlflow.prompt.is_prompt` != 'true'
        return clause.op in ("!=", "NOT IN")
    return compare(value, clause.op, clause.value)


def _version_field(pair: tuple[RegisteredModel, ModelVersion], entity: str, key: str) -> Any:
    m, v = pair
    if entity == "tags":
        return v.tags.get(key)
    return {"name": m.name, "version": float(v.version), "run_id": None if v.job_id is None else str(v.job_id),
            "source": v.source, "model_id": v.model_id, "current_stage": v.stage,
            "creation_time": v.created_at * 1000, "last_update_time": v.updated_at * 1000}.get(key)


def search_versions(p: Platform, caller: Caller, *, filter_text: str | None, order_by: Sequence[Any],
                    max_results: int | None, page_token: str | None) -> dict[str, Any]:
    caller.check_user_call("read or change the model registry")
    clauses, order = _parsed(filter_text, order_by, VERSION_ATTRIBUTES)
    models = {m.id: m for m in store.models_of(p.db, caller.user.id)}
    pairs = [(models[v.registered_model_id], v) for v in store.versions_of(p.db, list(models))]
    found = [x for x in pairs if all(_holds(_version_field(x, c.entity, c.key), c) for c in clauses)]
    found.sort(key=lambda x: (x[0].name, -x[1].version))
    page, token = _page(_sorted(found, order, _version_field), page_token, max_results, 10_000, MAX_VERSION_SEARCH)
    out: dict[str, Any] = {"model_versions": [version_to_dict(m, v, caller.user.name) for m, v in page]}
    if token:
        out["next_page_token"] = token
    return out
