"""The model registry (services/registry.py) as the web console, the CLI and ``/api/v1/models`` show it:
a user's registered models, newest first, and one model with its versions, their aliases, source
jobs and files. Read only; every change goes through MLflow's API.

Who reaches what is registry.py's rule: a registered model is its owner's, looked up among that
owner's names only, so another user's answers as one that does not exist. An admin may name the
owner (``owner=``) to open anyone's, as admins open any job or sweep; the listing is one's own, as
the sweeps listing is.
"""
from __future__ import annotations

from typing import Any

from modelyard.artifacts.keys import registry_prefix
from modelyard.db import registry as store
from modelyard.db.records import User
from modelyard.db.registry import ModelVersion, RegisteredModel
from modelyard.db.users import get_user_by_name
from modelyard.server.mlflow_auth import Caller
from modelyard.server.platform import Platform
from modelyard.server.serialize import iso
from modelyard.services import registry

MAX_FILES = 1000  # listed per version: a model's files are few; more are still downloadable by path


def _owner(p: Platform, user: User, owner: str | None, name: str) -> User:
    """Whose registry ``name`` is looked up in: the user's own, or an admin's choice of owner.
    Anyone else's answers as a model that does not exist, whoever names it."""
    if owner is None or owner == user.name:
        return user
    found = get_user_by_name(p.db, owner) if user.is_admin else None
    if found is None:
        raise registry.no_model(name)
    return found


def _aliases(model: RegisteredModel, version: int | None = None) -> list[str]:
    return sorted(a for a, n in model.aliases.items() if version is None or n == version)


def summary(model: RegisteredModel, versions: list[ModelVersion], owner: str) -> dict[str, Any]:
    """One line of the listing; ``versions``: the model's, newest first."""
    return {"name": model.name, "owner": owner, "description": model.description,
            "latest_version": versions[0].version if versions else None, "version_count": len(versions),
            "aliases": dict(sorted(model.aliases.items())), "tags": dict(sorted(model.tags.items())),
            "created_at": iso(model.created_at), "updated_at": iso(model.updated_at)}


def listing(p: Platform, user: User, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """The user's registered models, the most recently changed (a new version, alias or tag) first."""
    models = sorted(store.models_of(p.db, user.id), key=lambda m: (-m.updated_at, m.name))
    page = models[offset:offset + limit]
    versions: dict[int, list[ModelVersion]] = {m.id: [] for m in page}
    for v in store.versions_of(p.db, list(versions)) if page else []:
        versions[v.registered_model_id].append(v)
    return {"models": [summary(m, versions[m.id], user.name) for m in page], "total": len(models)}


def _version(p: Platform, model: RegisteredModel, v: ModelVersion) -> dict[str, Any]:
    key = registry_prefix(model.id, v.version)
    files = p.storage.list(key)
    return {"version": v.version, "aliases": _aliases(model, v.version), "status": "READY", "stage": v.stage,
            "job_id": v.job_id, "source": v.source, "model_id": v.model_id, "description": v.description,
            "tags": dict(sorted(v.tags.items())), "created_at": iso(v.created_at), "updated_at": iso(v.updated_at),
            # its files, read through the MLflow artifact routes (services/run_artifacts.py) at
            # /api/2.0/mlflow-artifacts/artifacts/<artifact_path>/<path>
            "artifact_path": key, "file_count": len(files),
            "files": [{"path": f.path, "size": f.size} for f in files[:MAX_FILES]]}


def show(p: Platform, user: User, name: Any, *, owner: str | None = None) -> dict[str, Any]:
    """The registered model with its versions, newest first, and each version's files."""
    who = _owner(p, user, owner, str(name))
    model = registry.reach(p, Caller(who), name)
    versions = store.versions_of(p.db, [model.id])
    return {**summary(model, versions, who.name), "versions": [_version(p, model, v) for v in versions]}


def of_job(p: Platform, user: User, job_id: int, job_owner: str) -> list[dict[str, Any]]:
    """The versions registered from job ``job_id`` (one ``user`` may read) in its owner's registry."""
    owner = user if job_owner == user.name else get_user_by_name(p.db, job_owner)
    if owner is None:
        return []
    return [{"name": m.name, "version": v.version, "owner": owner.name, "aliases": _aliases(m, v.version)}
            for m, v in store.versions_of_job(p.db, job_id) if m.user_id == owner.id]
