"""The supervisor's configuration (docs/protocol.md, "Supervisor launch") and the job's environment.

This module owns reading CONFIG.json into a typed object, the layout of an
attempt's run folder, and the exact variables a job is given; ``run --local``
builds the same objects, so a local run sees what a platform run sees.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelyard.errors import ErrorCode, ModelyardError

# Variables the supervisor sets itself; inherited values are dropped so a job
# never sees a stale one (e.g. RESUME_DIR from a shell that ran another job).
_OWNED = ("MODELYARD_JOB_ID", "MODELYARD_ATTEMPT", "MODELYARD_OUTPUT_DIR", "MODELYARD_RESUME_DIR", "MODELYARD_DATA_DIR")


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
    def resume(self) -> Path:
        return self.root / "resume"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    def create(self) -> None:
        for p in (self.root, self.output, self.spool):
            p.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class SupervisorConfig:
    job_id: str
    attempt: int
    argv: list[str]
    run_dir: Path
    attempt_id: str = ""
    server_url: str | None = None  # None: local mode, lines echoed, no reports
    token: str = ""
    storage_url: str | None = None  # None: nothing synced (local mode)
    snapshot_key: str | None = None
    workdir: Path | None = None
    resume_prefix: str | None = None
    output_prefix: str | None = None
    log_key: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    gpus: list[int] = field(default_factory=list)
    max_runtime: float | None = None
    sync_interval: float = 600.0
    stop_grace: float = 10.0
    heartbeat_interval: float = 2.0
    sample_interval: float = 5.0
    # Extensions beyond the protocol table, all optional:
    server_file: Path | None = None  # JSON {"url": ...}, re-read to find a restarted server
    data_dir: Path | None = None  # a materialised dataset -> MODELYARD_DATA_DIR
    dataset: str | None = None  # a pinned "name:version" to materialise into data_dir before the command
    dataset_cache: Path | None = None  # where: shared by every job on the machine (default: beside runs/)
    resume_dir: Path | None = None  # a local folder to resume from (run --local)
    final_deadline: float = 3600.0  # how long to keep retrying the final batch
    retry_max_backoff: float = 5.0
    batch_interval: float = 0.2
    batch_max_items: int = 5000

    @property
    def dirs(self) -> RunDirs:
        return RunDirs(self.run_dir)

    @property
    def dataset_cache_dir(self) -> Path:
        """``$MODELYARD_HOME/cache/datasets`` when run_dir is ``$MODELYARD_HOME/runs/ID-N``."""
        return self.dataset_cache or self.run_dir.parent.parent / "cache" / "datasets"

    @property
    def local_mode(self) -> bool:
        return self.server_url is None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "SupervisorConfig":
        try:
            argv = [str(a) for a in raw["argv"]]
            if not argv:
                raise ValueError("argv is empty")
            return cls(
                job_id=str(raw["job_id"]),
                attempt=int(raw.get("attempt") or 1),
                attempt_id=str(raw.get("attempt_id") or ""),
                argv=argv,
                run_dir=Path(raw["run_dir"]),
                server_url=(raw.get("server_url") or None),
                token=str(raw.get("token") or ""),
                storage_url=raw.get("storage_url") or None,
                snapshot_key=raw.get("snapshot_key") or None,
                workdir=_opt_path(raw.get("workdir")),
                resume_prefix=raw.get("resume_prefix") or None,
                output_prefix=raw.get("output_prefix") or None,
                log_key=raw.get("log_key") or None,
                env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
                gpus=[int(g) for g in raw.get("gpus") or []],
                max_runtime=_opt_float(raw.get("max_runtime") or None),  # 0 or null: no limit
                **_floats(raw, "sync_interval", "stop_grace", "heartbeat_interval", "sample_interval",
                          "final_deadline", "retry_max_backoff", "batch_interval"),
                server_file=_opt_path(raw.get("server_file")),
                data_dir=_opt_path(raw.get("data_dir")),
                dataset=raw.get("dataset") or None,
                dataset_cache=_opt_path(raw.get("dataset_cache")),
                resume_dir=_opt_path(raw.get("resume_dir")),
                batch_max_items=int(raw.get("batch_max_items") or 5000),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelyardError(ErrorCode.INVALID, f"bad supervisor config: {e!r}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "SupervisorConfig":
        try:
            raw = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as e:
            raise ModelyardError(ErrorCode.INVALID, f"cannot read supervisor config {path}: {e}") from None
        return cls.from_dict(raw)


def job_env(
    config: SupervisorConfig,
    *,
    base: Mapping[str, str] | None = None,
    resume_dir: Path | None = None,
    data_dir: Path | None = None,
) -> dict[str, str]:
    """The job's environment: ``base`` (the supervisor's), then ``config.env``, then ours.
    ``data_dir`` (a dataset materialised for this attempt) wins over ``config.data_dir``."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _OWNED}
    env.update(config.env)
    env["MODELYARD_JOB_ID"] = config.job_id
    env["MODELYARD_ATTEMPT"] = str(config.attempt)
    env["MODELYARD_OUTPUT_DIR"] = str(config.dirs.output)
    if resume_dir is not None:
        env["MODELYARD_RESUME_DIR"] = str(resume_dir)
    data_dir = data_dir or config.data_dir
    if data_dir is not None:
        env["MODELYARD_DATA_DIR"] = str(data_dir)
    env["CUDA_VISIBLE_DEVICES"] = gpu_list(config.gpus)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def gpu_list(gpus: Sequence[int]) -> str:
    return ",".join(str(g) for g in gpus)


def _opt_path(v: object) -> Path | None:
    return Path(str(v)) if v else None


def _opt_float(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]


def _floats(raw: Mapping[str, Any], *names: str) -> dict[str, float]:
    return {n: float(raw[n]) for n in names if raw.get(n) is not None}
