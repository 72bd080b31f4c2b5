"""What the scheduler hands a supervisor: one typed, versioned structure both ends use.

The scheduler builds a ``LaunchSpec`` (scheduler/launch.py), the executor writes
it as JSON (CONFIG.json, docs/protocol.md), and the supervisor reads it back
with the same model: no dictionary is built by hand on one side and parsed by
hand on the other. ``version`` changes when a field changes meaning; a
supervisor refuses a version it does not know rather than guess.

Nomenclature: the *environment* is what the command runs in (the server's
Python, an image, a uv virtualenv); the *sandbox* is what it may use and as
whom (an unprivileged uid, cores, memory).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelyard.jobs.nodes import LOCAL_NODE

LAUNCH_VERSION = 1
# In the run folder, written by the supervisor once the command started: {"pid", "started"}
# of the command's process-group leader, so that an executor can kill a lost attempt's command
JOB_PID_FILE = "job.pid"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunAs(_Frozen):
    """The unprivileged OS identity the command runs as (a shared server's per-owner uid)."""

    uid: int = Field(ge=1)
    gid: int = Field(ge=1)


class Environment(_Frozen):
    """Where the command runs: neither field set means the server's own Python, as a bare process."""

    image: str | None = None  # a container image reference, run with Podman or Docker
    requirements: str | None = None  # the text of a requirements file: a uv virtualenv built for it
    container_runtime: Literal["podman", "docker"] | None = None  # None: whichever the machine has
    # the machine's venv cache (supervisor/venv.py); None: beside runs/, as the dataset cache
    venv_cache: Path | None = None
    venv_cache_size: int = Field(20 * 1024**3, ge=0)  # bytes; least recently used venvs go past it
    venv_python: str | None = None  # the interpreter venvs are made with; None: the supervisor's


class Sandbox(_Frozen):
    """What the command may use. Zero or empty means no limit of that kind."""

    run_as: RunAs | None = None
    cpus: float = Field(0.0, ge=0)  # a CPU quota, in cores
    cpuset: list[int] = Field(default_factory=list)  # the cores the command is pinned to
    memory: int = Field(0, ge=0)  # bytes


class Distributed(_Frozen):
    """This supervisor's place in its job: node rank, nodes, processes per node, the rendezvous.

    Every job's command gets the variables ``torchrun`` and ``torch.distributed``
    read (``env()``), so that ``torchrun --nnodes $NNODES --node-rank $NODE_RANK
    --nproc-per-node $LOCAL_WORLD_SIZE --master-addr $MASTER_ADDR --master-port
    $MASTER_PORT train.py``, or a script calling ``init_process_group`` with one
    process per node, runs unchanged on one node or many.
    """

    node_rank: int = Field(0, ge=0)
    nnodes: int = Field(1, ge=1)
    nproc_per_node: int = Field(1, ge=1)
    node_id: str = LOCAL_NODE
    master_addr: str = "127.0.0.1"  # rank 0's node, as the other nodes reach it
    master_port: int | None = Field(None, ge=1, le=65535)  # None: the supervisor picks a free one (one node)

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    def env(self, master_port: int) -> dict[str, str]:
        env = {
            "MASTER_ADDR": self.master_addr, "MASTER_PORT": str(master_port),
            "WORLD_SIZE": str(self.world_size), "NODE_RANK": str(self.node_rank), "NNODES": str(self.nnodes),
            "LOCAL_WORLD_SIZE": str(self.nproc_per_node),
            "MODELYARD_NODE_RANK": str(self.node_rank), "MODELYARD_NNODES": str(self.nnodes),
        }
        if self.nproc_per_node == 1:
            # one process per node is itself a rank: init_process_group("env://") needs no torchrun
            env.update(RANK=str(self.node_rank), LOCAL_RANK="0")
        return env


class LaunchSpec(_Frozen):
    """One attempt, everything its supervisor needs. ``server_url`` None is local mode (``run --local``)."""

    version: Literal[1] = LAUNCH_VERSION
    job_id: str
    attempt: int = Field(1, ge=1)
    attempt_id: str = ""
    argv: list[str] = Field(min_length=1)
    run_dir: Path
    server_url: str | None = None  # None: local mode, lines echoed, no reports
    token: str = ""
    # the job's own MLflow client token (jobs/run_token.py): MLFLOW_TRACKING_TOKEN, with MLFLOW_RUN_ID = job_id
    run_token: str = ""
    # the MLflow experiment the job's run is in at launch (MLFLOW_EXPERIMENT_ID); "": its owner's Default
    experiment_id: str = ""
    storage_url: str | None = None  # None: nothing synced (local mode)
    snapshot_key: str | None = None
    workdir: Path | None = None  # run in place here (no snapshot); None with no snapshot: an empty folder
    resume_prefix: str | None = None
    output_prefix: str | None = None
    log_key: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)  # given to the command as variables, shown as ***
    gpus: list[int] = Field(default_factory=list)
    max_runtime: float | None = None  # seconds; None or 0: no limit
    sync_interval: float = 600.0
    stop_grace: float = 10.0
    heartbeat_interval: float = 2.0
    # how long the command may run on while its disk is full: half the server's heartbeat timeout
    disk_full_grace: float = 30.0
    sample_interval: float = 5.0
    environment: Environment = Field(default_factory=Environment)
    sandbox: Sandbox = Field(default_factory=Sandbox)
    distributed: Distributed = Field(default_factory=Distributed)
    server_file: Path | None = None  # JSON {"url": ...}, re-read to find a restarted server
    # the process the supervisor must not outlive (a Ray actor holding its resources): once it is
    # gone the supervisor kills its command and ends the attempt as lost; None: it outlives its parent
    parent_pid: int | None = Field(None, ge=1)
    data_dir: Path | None = None  # a materialised dataset -> MODELYARD_DATA_DIR
    dataset: str | None = None  # a pinned "name:version" to materialise into data_dir before the command
    dataset_cache: Path | None = None  # where: shared by every job on the machine (default: beside runs/)
    resume_dir: Path | None = None  # a local folder to resume from (run --local)
    final_deadline: float = 3600.0  # how long to keep retrying the final batch
    retry_max_backoff: float = 5.0
    batch_interval: float = 0.2
    batch_max_items: int = Field(5000, ge=1)
    max_snapshot_bytes: int = Field(200 * 1024 * 1024, ge=1)  # what the snapshot may unpack to
    max_snapshot_files: int = Field(100_000, ge=1)  # and how many members it may hold
    # the job's metric_patterns (jobs/patterns.py); defaulted, so a config written before them still loads
    metric_patterns: list[str] = Field(default_factory=list)

    @field_validator("argv")
    @classmethod
    def _argv(cls, v: list[str]) -> list[str]:
        if not v[0]:
            raise ValueError("argv[0] is empty")
        return v

    @field_validator("max_runtime")
    @classmethod
    def _no_limit(cls, v: float | None) -> float | None:
        return v or None

    @property
    def local_mode(self) -> bool:
        return self.server_url is None
