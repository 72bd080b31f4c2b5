"""MLflow experiments as the tracking API serves them (server/routes_mlflow.py, README "MLflow").

A user reaches their own experiments only; another's answers as one that does not exist. A job's
run token speaks for its owner's experiments only as ``mlflow.set_experiment`` needs: it finds one by
name and creates one, which puts its run there while the run is still in Default
(services/job_experiments.py); by id it reads only its own run's experiment, and it changes,
searches past or tags none.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from modelyard.db import experiments as store
from modelyard.db.experiments import ACTIVE, DELETED, Experiment, ExperimentExists
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.mlflow_search import EXPERIMENT_ATTRIBUTES, parse_filter, parse_order_by
from modelyard.server.mlflow_auth import Caller
from modelyard.server.platform import Platform
from modelyard.services import job_experiments

MAX_NAME = 500  # MLflow's
VIEW_STAGES = {"ACTIVE_ONLY": (ACTIVE,), "DELETED_ONLY": (DELETED,), "ALL": (ACTIVE, DELETED)}


def not_found(experiment: str) -> ModelyardError:
    return ModelyardError(ErrorCode.NOT_FOUND, f"no experiment with id {experiment!r}", field="experiment_id")


def experiment_id(text: str | None, field: str = "experiment_id") -> int:
    if text is None or str(text) == "":
        raise ModelyardError(ErrorCode.INVALID, f"missing value for required parameter {field!r}", field=field)
    if not str(text).isdigit() or len(str(text)) > 18:
        raise not_found(str(text))
    return int(text)


def get(p: Platform, caller: Caller, text: str | None) -> Experiment:
    """The caller's experiment ``text`` (an id; "0" is their Default), or not found."""
    exp_id = experiment_id(text)
    found = store.get(p.db, caller.user.id, exp_id)
    if found is None or (caller.is_job and exp_id != _job_experiment(p, caller)):
        raise not_found(str(text))
    return found


def _job_experiment(p: Platform, caller: Caller) -> int:
    return job_experiments.current(p.db, _job_id(caller))


def to_dict(e: Experiment) -> dict[str, Any]:
    return {"experiment_id": str(e.id), "name": e.name, "lifecycle_stage": e.lifecycle_stage,
            "artifact_location": f"mlflow-artifacts:/experiments/{e.id}",
            "creation_time": int(e.created_at * 1000), "last_update_time": int(e.updated_at * 1000),
            "tags": [{"key": k, "value": v} for k, v in sorted(e.tags.items())]}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ModelyardError(ErrorCode.INVALID, "an experiment's name must be a non-empty string", field="name")
    if len(name) > MAX_NAME:
        raise ModelyardError(ErrorCode.INVALID, f"an experiment's name is at most {MAX_NAME} characters, "
                             f"not {len(name)}", field="name")
    if "\0" in name:  # no PostgreSQL text column holds one
        raise ModelyardError(ErrorCode.INVALID, "an experiment's name holds a NUL byte", field="name")
    return name


def create(p: Platform, caller: Caller, name: Any, tags: dict[str, str]) -> dict[str, Any]:
    """A new experiment of the caller's; a job's token makes one only to put its run, still in Default, there."""
    name = check_name(name)
    if caller.is_job:
        if store.by_name(p.db, caller.user.id, name) is not None:
            # as anyone is answered, so the client reads it by name: another process of the same job
            # (a rank of a multi-node job) may have made it, and put the run in it, a moment ago
            raise ExperimentExists(name)
        _check_in_default(p, caller, name)
    exp_id = store.create(p.db, caller.user.id, name, tags)
    if caller.is_job:
        made = store.get(p.db, caller.user.id, exp_id)
        assert made is not None  # experiments are never removed, only marked deleted
        job_experiments.join(p.db, _job_id(caller), made)
    return {"experiment_id": str(exp_id)}


def _job_id(caller: Caller) -> int:
    assert caller.job_id is not None
    return caller.job_id


def _check_in_default(p: Platform, caller: Caller, name: str) -> None:
    own = _job_experiment(p, caller)
    if own == store.DEFAULT_ID:
        return
    current = store.get(p.db, caller.user.id, own)
    now = current.name if current is not None else str(own)
    raise ModelyardError(ErrorCode.CONFLICT, f"run {caller.job_id} is in experiment {now!r} (id {own}), where it "
                         f"stays, so its run token creates no experiment {name!r}: set_experiment({now!r}), or "
                         f"submit the job with --experiment {name!r}", field="name")


def by_name(p: Platform, caller: Caller, name: Any) -> dict[str, Any]:
    """The caller's experiment ``name``. A job's script naming it (``set_experiment``) puts its run there,
    if the run is still in Default; a run elsewhere stays, and the client says the two differ."""
    found = store.by_name(p.db, caller.user.id, check_name(name))
    if found is None:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"no experiment named {name!r}", field="experiment_name")
    if caller.is_job:
        job_experiments.join(p.db, _job_id(caller), found)
    return {"experiment": to_dict(found)}


def _stored(p: Platform, caller: Caller, text: str | None, what: str) -> Experiment:
    caller.check_user_call(what)
    e = get(p, caller, text)
    if e.id == store.DEFAULT_ID:
        raise ModelyardError(ErrorCode.INVALID, f"the Default experiment (0) cannot be {what.split()[0]}d; it is "
                             "where runs with no experiment are", field="experiment_id")
    return e


def rename(p: Platform, caller: Caller, text: str | None, new_name: Any) -> None:
    store.rename(p.db, _stored(p, caller, text, "rename experiments"), check_name(new_name))


def set_stage(p: Platform, caller: Caller, text: str | None, stage: str) -> None:
    what = "delete experiments" if stage == DELETED else "restore experiments"
    store.set_stage(p.db, _stored(p, caller, text, what), stage)


def set_tag(p: Platform, caller: Caller, text: str | None, key: str, value: str | None) -> None:
    caller.check_user_call("tag experiments")
    e = get(p, caller, text)
    if e.id == store.DEFAULT_ID:
        raise ModelyardError(ErrorCode.INVALID, "the Default experiment (0) holds no tags", field="experiment_id")
    store.set_tag(p.db, e, key, value)


def search(p: Platform, caller: Caller, *, view: str, filter_text: str | None, order_by: list[str],
           max_results: int, page_token: str | None) -> dict[str, Any]:
    try:
        clauses = parse_filter(filter_text, attributes=EXPERIMENT_ATTRIBUTES)
        order = parse_order_by(order_by, attributes=EXPERIMENT_ATTRIBUTES)
    except ValueError as e:
        raise ModelyardError(ErrorCode.INVALID, str(e), field="filter") from None
    offset = decode_token(page_token)
    found = store.search(p.db, caller.user.id, stages=VIEW_STAGES[view], clauses=clauses, order=order,
                         limit=max_results + 1, offset=offset)
    if caller.is_job:
        own = _job_experiment(p, caller)
        found = [e for e in found if e.id == own]
    out: dict[str, Any] = {"experiments": [to_dict(e) for e in found[:max_results]]}
    if len(found) > max_results:
        out["next_page_token"] = encode_token(offset + max_results)
    return out


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).decode()


def decode_token(token: str | None) -> int:
    """The offset a page token (ours: base64 of ``{"offset": n}``) carries; 0 for none."""
    if not token:
        return 0
    try:
        offset = orjson.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        offset = None
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 10**9:
        raise ModelyardError(ErrorCode.INVALID, f"the page_token {token[:40]!r} is not one this server gave",
                             field="page_token")
    return offset
