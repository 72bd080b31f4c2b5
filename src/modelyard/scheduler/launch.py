"""What a placed attempt is launched with: its ``LaunchSpec`` (jobs/launch.py, docs/protocol.md).

Artifact keys are decided here and only here: the server reads outputs and
logs back from the same keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from modelyard.config import Settings
from modelyard.executors.base import Launch
from modelyard.jobs.launch import Environment, LaunchSpec, Sandbox
from modelyard.store.records import Attempt, Job


def output_prefix(job_id: int) -> str:
    return f"jobs/{job_id}/outputs"


def dataset_cache_dir(settings: Settings) -> Path:
    """The dataset cache every supervisor on this machine shares, keyed by name and version."""
    return settings.home / "cache" / "datasets"


def log_key(job_id: int, attempt: int) -> str:
    return f"jobs/{job_id}/attempts/{attempt}/log.txt"


@dataclass(frozen=True)
class LaunchContext:
    settings: Settings
    server_url: str | None
    server_file: Path | None = None
    heartbeat_interval: float = 2.0
    sample_interval: float = 5.0


def build_launch(ctx: LaunchContext, job: Job, attempt: Attempt, token: str) -> Launch:
    run_dir = ctx.settings.runs_dir / f"{job.id}-{attempt.number}"
    spec = job.spec
    return Launch(LaunchSpec(
        job_id=str(job.id),
        attempt=attempt.number,
        attempt_id=str(attempt.id),
        server_url=ctx.server_url,
        server_file=ctx.server_file,
        token=token,
        storage_url=ctx.settings.storage_url,
        snapshot_key=job.snapshot_key,
        # in place only when there is no snapshot and a folder was named; else an empty folder of its own
        workdir=None if job.snapshot_key else spec.workdir,
        resume_prefix=output_prefix(job.resume_from) if job.resume_from else None,
        output_prefix=output_prefix(job.id),
        log_key=log_key(job.id, attempt.number),
        run_dir=run_dir,
        argv=spec.argv(),
        env=dict(spec.env),
        gpus=list(attempt.gpus),
        max_runtime=spec.max_runtime,
        sync_interval=spec.sync_interval,
        stop_grace=ctx.settings.stop_grace,
        heartbeat_interval=ctx.heartbeat_interval,
        sample_interval=ctx.sample_interval,
        dataset=job.dataset,  # pinned "name:version", materialised before the command starts
        dataset_cache=dataset_cache_dir(ctx.settings),
        environment=Environment(image=spec.image, requirements=spec.requirements),
        sandbox=Sandbox(cpus=attempt.resources.cpus, memory=attempt.resources.memory),
    ))
