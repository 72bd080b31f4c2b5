"""Typed records for rows, and the one seam that converts rows into them."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from modelyard.jobs import JobSpec, JobState, Resources
from modelyard.jobs.nodes import LOCAL_NODE, NodeSlice, parse_slices
from modelyard.jobs.spec import STORED


@dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool


@dataclass(frozen=True)
class Token:
    """An API token as listings show it: never the token itself, only its first characters."""
    id: int
    user_id: int
    owner: str
    name: str
    prefix: str
    created_at: float
    expires_at: float | None  # None: never


def token_from_row(row: sa.Row[Any]) -> Token:
    m = row._mapping
    return Token(id=m["id"], user_id=m["user_id"], owner=m["owner"], name=m["name"], prefix=m["prefix"],
                 created_at=m["created_at"], expires_at=m["expires_at"])


@dataclass(frozen=True)
class Attempt:
    id: int
    job_id: int
    number: int
    state: JobState
    gpus: tuple[int, ...]
    resources: Resources
    exit_code: int | None
    reason: str | None
    message: str | None
    executor: str
    handle: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    last_heartbeat: float
    last_seq: int
    log_count: int
    stop_requested: bool
    cpuset: tuple[int, ...] = ()  # the core indices it was given (rank 0's)
    slices: tuple[NodeSlice, ...] = ()  # one per node rank: node id, GPU and core indices

    @property
    def nnodes(self) -> int:
        return max(len(self.slices), 1)


@dataclass(frozen=True)
class Job:
    id: int
    user_id: int
    owner: str
    name: str
    state: JobState
    priority: int
    resources: Resources
    spec: JobSpec
    snapshot_key: str | None
    resume_from: int | None
    retries_left: int
    attempt: int
    exit_code: int | None
    message: str | None
    created_at: float
    queued_at: float
    started_at: float | None
    ended_at: float | None
    dataset: str | None = None  # the pinned version, "name:version"
    sealed_secrets: str | None = None  # the inline secrets' values, sealed (modelyard/secrets.py); never shown
    environment: str | None = None  # the named environment its image or requirements came from
    tags: tuple[str, ...] = ()  # as they are now (job_tags), sorted: editable after submit, unlike spec.tags
    removed_at: float | None = None  # ``rm --keep-final`` or retention removed all but its final/
    kind: str = "job"  # "job": a command the platform runs; "run": an MLflow run with no process (README "MLflow")
    experiment_id: int | None = None  # its MLflow experiment; None: the owner's Default ("0")
    sweep_id: int | None = None  # the sweep it is a trial of (README "Sweeps")
    trial: int | None = None  # its trial's number in that sweep's study
    run_deleted_at: float | None = None  # MLflow's delete-run: its run's lifecycle_stage is "deleted"
    # as they are now (job_params): the spec's, and those its MLflow client logged since
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_process(self) -> bool:
        return self.kind == "job"


@dataclass(frozen=True)
class NamedEnvironment:
    id: int
    name: str
    user_id: int
    owner: str
    owner_is_admin: bool
    image: str | None
    requirements: str | None
    description: str
    created_at: float


@dataclass(frozen=True)
class Event:
    id: int
    job_id: int
    attempt: int
    time: float
    from_state: JobState | None
    to_state: JobState
    reason: str | None
    actor: str | None = None  # the user who asked for it; None: the platform itself


def job_from_row(row: sa.Row[Any], tags: tuple[str, ...] = (), params: Mapping[str, Any] | None = None) -> Job:
    m = row._mapping
    spec = JobSpec.model_validate(orjson.loads(m["spec"]), context=STORED)
    return Job(
        id=m["id"], user_id=m["user_id"], owner=m["owner"], name=m["name"], state=JobState(m["state"]),
        priority=m["priority"], resources=Resources(gpus=m["gpus"], cpus=m["cpus"], memory=m["memory"]),
        spec=spec, snapshot_key=m["snapshot_key"],
        resume_from=m["resume_from"], retries_left=m["retries_left"], attempt=m["attempt"],
        exit_code=m["exit_code"], message=m["message"], created_at=m["created_at"], queued_at=m["queued_at"],
        started_at=m["started_at"], ended_at=m["ended_at"], dataset=m["dataset"], sealed_secrets=m.get("secrets"),
        environment=m["environment"], tags=tags, removed_at=m.get("removed_at"),
        kind=m.get("kind") or "job", experiment_id=m.get("experiment_id"), sweep_id=m.get("sweep_id"),
        trial=m.get("trial"), run_deleted_at=m.get("run_deleted_at"),
        params={**spec.params, **(params or {})},  # the spec's in its order, then those logged since
    )


def environment_from_row(row: sa.Row[Any]) -> NamedEnvironment:
    m = row._mapping
    return NamedEnvironment(
        id=m["id"], name=m["name"], user_id=m["user_id"], owner=m["owner"], owner_is_admin=bool(m["owner_is_admin"]),
        image=m["image"], requirements=m["requirements"], description=m["description"], created_at=m["created_at"],
    )


def attempt_from_row(row: sa.Row[Any]) -> Attempt:
    m = row._mapping
    return Attempt(
        id=m["id"], job_id=m["job_id"], number=m["number"], state=JobState(m["state"]),
        gpus=parse_gpus(m["gpus"]), resources=Resources(gpus=len(parse_gpus(m["gpus"])), cpus=m["cpus"], memory=m["memory"]),
        exit_code=m["exit_code"], reason=m["reason"], message=m["message"], executor=m["executor"],
        handle=m["handle"], created_at=m["created_at"], started_at=m["started_at"], ended_at=m["ended_at"],
        last_heartbeat=m["last_heartbeat"], last_seq=m["last_seq"], log_count=m["log_count"],
        stop_requested=bool(m["stop_requested"]), cpuset=parse_gpus(m["cpuset"]),
        slices=_slices(m),
    )


def _slices(m: Any) -> tuple[NodeSlice, ...]:
    """The stored allocation; a row from before nodes were recorded is one slice of the local node."""
    stored = parse_slices(m.get("nodes"))
    return stored or (NodeSlice(LOCAL_NODE, parse_gpus(m["gpus"]), parse_gpus(m["cpuset"])),)


def event_from_row(row: sa.Row[Any]) -> Event:
    m = row._mapping
    return Event(
        id=m["id"], job_id=m["job_id"], attempt=m["attempt"], time=m["time"],
        from_state=JobState(m["from_state"]) if m["from_state"] else None,
        to_state=JobState(m["to_state"]), reason=m["reason"], actor=m.get("actor"),
    )


def parse_gpus(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",")) if text else ()


def format_gpus(gpus: tuple[int, ...] | list[int]) -> str:
    return ",".join(str(g) for g in gpus)
