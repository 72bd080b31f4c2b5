"""Response models: the shapes of docs/api.md as the OpenAPI states them.

``serialize.py`` builds the dicts; these models only describe and check them, so
the fuzz test can hold each response to its schema. Each allows extra keys
(``extra="allow"``): a key added to a serializer shows up in the answer at once,
and is documented here when it settles.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class AttemptOut(Out):
    number: int
    state: str
    exit_code: int | None
    reason: str | None
    message: str | None
    gpus: list[int]  # rank 0's
    nodes: list[dict[str, Any]] = []  # one per node rank: {"node", "gpus", "cores"}; [] before it is placed
    created_at: str | None
    started_at: str | None
    ended_at: str | None


class JobOut(Out):
    id: int
    name: str
    owner: str
    state: str
    exit_code: int | None
    message: str | None
    attempt: int
    attempts: list[AttemptOut]
    resources: dict[str, Any]  # per node
    nodes: int = 1
    nproc_per_node: int | None = None
    node_labels: dict[str, str] = {}
    command: list[str] | str
    priority: int
    params: dict[str, str | int | float | bool] = {}
    tags: list[str] = []
    kind: Literal["job", "run"] = "job"  # "run": an MLflow run with no process (README "MLflow")
    has_process: bool = True
    experiment_id: int | None = None  # its MLflow experiment; None: the owner's Default ("0")
    experiment: str | None = None  # the experiment's name it was submitted into (spec "experiment"), if any
    max_runtime: float
    sync_interval: float
    retries: int
    retries_left: int
    env: dict[str, str]
    webhooks: list[str]
    webhook_events: list[str] = []
    metric_patterns: list[str] = []
    console: dict[str, Any] | None = None  # {"idle_timeout"}: a notebook console (POST /consoles)
    snapshot: str | None
    resume_from: int | None
    dataset: str | None
    dataset_requested: str | None
    created_at: str | None
    queued_at: str | None
    started_at: str | None
    ended_at: str | None
    sweep_id: int | None = None  # the sweep it is a trial of, and the trial's number
    trial: int | None = None


class JobList(Out):
    jobs: list[JobOut]
    total: int
    param_names: list[str] = []  # the union of the listed jobs' parameter names, sorted


class TagsOut(Out):
    job_id: int
    tags: list[str]


class EventOut(Out):
    id: int
    job_id: int
    time: str | None
    attempt: int
    from_: str | None = Field(alias="from")
    to: str
    reason: str | None
    actor: str | None  # the user who asked for the change; None for the platform's own


class EventList(Out):
    events: list[EventOut]


class LogLine(Out):
    n: int
    t: float
    stream: str
    text: str
    node: int = 0  # the node rank whose supervisor sent it


class LogPage(Out):
    attempt: int
    lines: list[LogLine]
    next_offset: int
    done: bool
    nodes: int = 1  # the attempt's node ranks: lines are tagged with theirs when there are several


class LogSize(Out):
    attempt: int
    lines: int
    done: bool


class OutputFile(Out):
    path: str
    size: int
    mtime: float
    final: bool = False  # under final/: part of the job's model


class OutputList(Out):
    attempt: int | None = None  # whose outputs these are; none: a job's from before per-attempt outputs, or none
    attempts: list[int] = []  # the attempts that have outputs, oldest first
    model_attempts: list[int] = []  # those that have a final/
    files: list[OutputFile]


class UserOut(Out):
    id: int
    name: str
    is_admin: bool


class NewUserOut(Out):
    user: UserOut
    token: str


class Health(Out):
    status: str
    version: str


class SnapshotOut(Out):
    key: str
    size: int


class SnapshotUploadOut(SnapshotOut):
    files: int
    bytes: int  # unpacked


class ReportAck(Out):
    stored: bool
    stop: bool


class RegisteredModelOut(Out):
    """One of the caller's registered models (README "MLflow model registry"), as /api/v1/models lists it."""
    name: str
    owner: str
    description: str | None
    latest_version: int | None
    version_count: int
    aliases: dict[str, int]  # alias -> version
    tags: dict[str, str]
    created_at: str
    updated_at: str


class RegisteredModelList(Out):
    models: list[RegisteredModelOut]
    total: int


class ModelVersionFile(Out):
    path: str  # relative to the version's artifact_path
    size: int


class ModelVersionOut(Out):
    version: int
    aliases: list[str]
    status: str
    stage: str  # MLflow's deprecated stages
    job_id: int | None  # the job (run) it was registered from; kept after that job is removed
    source: str
    model_id: str | None
    description: str | None
    tags: dict[str, str]
    created_at: str
    updated_at: str
    artifact_path: str  # its files: GET /api/2.0/mlflow-artifacts/artifacts/<artifact_path>/<path>
    file_count: int
    files: list[ModelVersionFile]


class RegisteredModelDetail(RegisteredModelOut):
    versions: list[ModelVersionOut]  # newest first
