"""The supervisor's configuration (docs/protocol.md, "Supervisor launch") and the job's environment.

This module owns reading CONFIG.json into a typed object, the layout of an
attempt's run folder, and the exact variables a job is given; ``run --local``
builds the same objects, so a local run sees what a platform run sees.
"""
from __future__ import annotations

import importlib.util
import math
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.launch import LaunchSpec
from modelyard.jobs.notebook import RUNNER_MODULE

# The only variables a job inherits from the supervisor's environment: what a
# shell needs (PATH, locale, time zone, terminal), what makes "the server's
# Python" the server's (PYTHONPATH, VIRTUAL_ENV) and where CUDA's libraries are.
# Everything else -- MODELYARD_HOME, database URLs, storage credentials, the
# server's tokens -- is the platform's, not the job's (docs/protocol.md).
_INHERITED = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONPATH", "VIRTUAL_ENV",
    "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_DEVICE_ORDER",
})
_INHERITED_PREFIXES = ("LC_",)
# Thread pools that size themselves by the machine's cores, not the job's
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


TENSORBOARD_DIR = "tensorboard"  # under the output folder, so the event files are kept with the outputs


@dataclass(frozen=True)
class RunDirs:
    """One attempt's local folder: ``code/``, ``output/``, ``resume/``, ``spool/``, ``log.txt``."""

    root: Path

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def tensorboard(self) -> Path:
        """``MODELYARD_TENSORBOARD_DIR``: where a job's TensorBoard writer goes (supervisor/tensorboard.py)."""
        return self.output / TENSORBOARD_DIR

    @property
    def resume(self) -> Path:
        return self.root / "resume"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def home(self) -> Path:
        """``HOME`` of a job that runs as its own uid (the server's HOME is not its)."""
        return self.root / "home"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    def create(self) -> None:
        for p in (self.root, self.output):
            p.mkdir(parents=True, exist_ok=True)
        # the supervisor's own: a job of another uid must not read its batches or log
        self.spool.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))


class SupervisorConfig(LaunchSpec):
    """The supervisor's view of its ``LaunchSpec``: the same fields, plus where things go locally."""

    @property
    def dirs(self) -> RunDirs:
        return RunDirs(self.run_dir)

    @property
    def dataset_cache_dir(self) -> Path:
        """``$MODELYARD_HOME/cache/datasets`` when run_dir is ``$MODELYARD_HOME/runs/ID-N``."""
        return self.dataset_cache or self.run_dir.parent.parent / "cache" / "datasets"

    @property
    def venv_cache_dir(self) -> Path:
        """``$MODELYARD_HOME/cache/venvs`` when run_dir is ``$MODELYARD_HOME/runs/ID-N``."""
        return self.environment.venv_cache or self.run_dir.parent.parent / "cache" / "venvs"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "SupervisorConfig":
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise ModelyardError(ErrorCode.INVALID, f"bad supervisor config: {_first_error(e)}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "SupervisorConfig":
        try:
            raw = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as e:
            raise ModelyardError(ErrorCode.INVALID, f"cannot read supervisor config {path}: {e}") from None
        if not isinstance(raw, dict):
            raise ModelyardError(ErrorCode.INVALID, f"supervisor config {path} is not a JSON object")
        return cls.from_dict(raw)


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(x) for x in err.get("loc", ())) or "config"
    return f"{where}: {err.get('msg', 'invalid')}"


def job_env(
    config: SupervisorConfig,
    *,
    base: Mapping[str, str] | None = None,
    resume_dir: Path | None = None,
    data_dir: Path | None = None,
) -> dict[str, str]:
    """The job's environment: a few of ``base`` (the supervisor's, see ``_INHERITED``),
    ``HOME``, thread counts, then ``config.env`` and its secrets, then the contract's (torchrun's
    variables included: ``MASTER_PORT`` is a free port when the launch names none).
    ``data_dir`` (a dataset materialised for this attempt) wins over ``config.data_dir``."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k in _INHERITED or k.startswith(_INHERITED_PREFIXES)}
    env.setdefault("PATH", os.defpath)
    # its own uid has a HOME of its own; a single user's job runs as that person, at home
    home = str(config.dirs.home) if config.sandbox.run_as is not None else base.get("HOME")
    if home:
        env["HOME"] = home
    threads = job_threads(config)
    if threads:
        env.update(dict.fromkeys(_THREAD_VARIABLES, str(threads)))
    env.update(config.env)
    env.update(config.secrets)
    env["MODELYARD_JOB_ID"] = config.job_id
    env["MODELYARD_ATTEMPT"] = str(config.attempt)
    env["MODELYARD_OUTPUT_DIR"] = str(config.dirs.output)
    env["MODELYARD_TENSORBOARD_DIR"] = str(config.dirs.tensorboard)
    env.update(mlflow_env(config))
    if resume_dir is not None:
        env["MODELYARD_RESUME_DIR"] = str(resume_dir)
    data_dir = data_dir or config.data_dir
    if data_dir is not None:
        env["MODELYARD_DATA_DIR"] = str(data_dir)
    env["CUDA_VISIBLE_DEVICES"] = gpu_list(config.gpus)
    env["PYTHONUNBUFFERED"] = "1"
    # torchrun's and torch.distributed's variables: the platform's, set after the job's own env so that
    # a stale MASTER_PORT in a spec cannot point the ranks at different rendezvous
    d = config.distributed
    env.update(d.env(d.master_port or free_port()))
    return env


def mlflow_env(config: SupervisorConfig) -> dict[str, str]:
    """Where the job's MLflow client logs (README "MLflow"): its server, its own run, its run token, and
    the experiment that run is in (none for Default), so ``set_experiment`` of that name and the client's
    own reading of MLFLOW_EXPERIMENT_ID agree with the run. None in local mode (``run --local``): the
    client keeps its own default there."""
    if config.server_url is None or not config.run_token:
        return {}
    out = {"MLFLOW_TRACKING_URI": config.server_url.rstrip("/"), "MLFLOW_RUN_ID": config.job_id,
           "MLFLOW_TRACKING_TOKEN": config.run_token}
    if config.experiment_id:
        out["MLFLOW_EXPERIMENT_ID"] = config.experiment_id
    return out


def runner_file() -> str:
    """notebooks/run.py's file, which a job's venv or image runs as a script (jobs/notebook.py)."""
    spec = importlib.util.find_spec(RUNNER_MODULE)
    assert spec is not None and spec.origin, RUNNER_MODULE
    return spec.origin


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now: a one-node job's rendezvous (torchrun binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def job_threads(config: SupervisorConfig) -> int | None:
    """The job's CPU count as a thread count (at least 1); None with no CPU limit."""
    sandbox = config.sandbox
    if sandbox.cpus > 0:
        return max(1, math.ceil(sandbox.cpus - 1e-9))
    return len(sandbox.cpuset) or None


def gpu_list(gpus: Sequence[int]) -> str:
    return ",".join(str(g) for g in gpus)
