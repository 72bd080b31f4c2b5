"""What a placed attempt is launched with: its ``LaunchSpec`` (jobs/launch.py, docs/protocol.md).

Artifact keys come from artifacts/keys.py, where the server reads outputs and
logs back from too. A job's secrets are opened here, at each launch,
and nowhere else: a stored secret rotated since the last attempt reaches the next.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from modelyard.artifacts.keys import attempt_output_prefix, log_key
from modelyard.artifacts.outputs import resume_prefix
from modelyard.artifacts.store import ArtifactStore
from modelyard.config import Settings
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.executors.base import Launch
from modelyard.jobs.launch import Distributed, Environment, LaunchSpec, RunAs, Sandbox
from modelyard.jobs.nodes import NodeSlice
from modelyard.jobs.params import command_argv, params_env
from modelyard.jobs.run_token import run_token
from modelyard.scheduler.console import console_variables
from modelyard.secrets import SecretBox
from modelyard.db import secrets as store_secrets
from modelyard.db.engine import Database
from modelyard.db.records import Attempt, Job
from modelyard.db.users import hash_token


def dataset_cache_dir(settings: Settings) -> Path:
    """The dataset cache every supervisor on this machine shares, keyed by name and version."""
    return settings.home / "cache" / "datasets"


def run_dir_name(job_id: int, attempt: int, node_rank: int = 0) -> str:
    """An attempt's run folder: ranks > 0 have their own, so two ranks on one machine never share one."""
    return f"{job_id}-{attempt}" + (f"-r{node_rank}" if node_rank else "")


def environment_for(settings: Settings, *, image: str | None = None, requirements: str | None = None) -> Environment:
    """What a command runs in, with this machine's venv cache settings (a job's, and ``run --local``'s)."""
    return Environment(image=image, requirements=requirements, venv_cache=settings.venv_cache_dir,
                       venv_cache_size=settings.venv_cache_size, venv_python=settings.venv_python)


@dataclass(frozen=True)
class LaunchContext:
    settings: Settings
    server_url: str | None
    server_file: Path | None = None
    heartbeat_interval: float = 2.0
    sample_interval: float = 5.0
    db: Database | None = None  # where a job's stored secrets are read (None: no secrets can be opened)
    secret_box: SecretBox | None = None
    # owner's user id -> the uid its jobs run as (a shared server's MODELYARD_JOB_UIDS); None: the server's own
    job_uid: Callable[[int], int] | None = None
    storage: ArtifactStore | None = None  # where resume outputs are looked for (None: one for settings.storage_url)

    def store(self) -> ArtifactStore:
        return self.storage or ArtifactStore(self.settings.storage_url)


def job_secrets(ctx: LaunchContext, job: Job) -> dict[str, str]:
    """The job's secrets in clear, for this attempt: inline ones from the job's row, stored ones
    from its owner's secrets as they are now."""
    wanted = job.spec.secrets
    if not wanted:
        return {}
    if ctx.secret_box is None or ctx.db is None:
        raise ModelyardError(ErrorCode.CONFLICT, f"job {job.id} has secrets, and this launcher cannot open them")
    box = ctx.secret_box
    inline = box.open_map(job.sealed_secrets, what=f"job {job.id}'s inline secrets")
    stored = store_secrets.ciphertexts(ctx.db, job.user_id, [n for n, v in wanted.items() if v is None])
    out: dict[str, str] = {}
    for name, given in wanted.items():
        if given is not None and name in inline:
            out[name] = inline[name]
        elif given is None and name in stored:
            out[name] = box.open(stored[name], what=f"secret {name}")
        else:
            raise ModelyardError(ErrorCode.INVALID, f"secret {name} of {job.owner} is no longer stored; "
                                 f"set it again (modelyard secret set {name}) and restart the job", field="secrets")
    return out


def run_as(ctx: LaunchContext, job: Job) -> RunAs | None:
    """As whom the command runs: its owner's own uid (gid the same number), as Slurm runs a job as its submitter."""
    if ctx.job_uid is None:
        return None
    uid = ctx.job_uid(job.user_id)
    return RunAs(uid=uid, gid=uid)


def build_launch(ctx: LaunchContext, job: Job, attempt: Attempt, token: str) -> Launch:
    """One LaunchSpec per node rank of the attempt (rank 0's first; README "Multi-node jobs").

    Every rank gets the code, the dataset, the resume outputs and the secrets; only rank 0
    syncs outputs (``output_prefix``, the attempt's own). ``distributed.master_addr`` and ``master_port`` stay
    the defaults: an executor that spreads ranks over machines sets them (executors/ray.py)."""
    slices = attempt.slices
    secrets = job_secrets(ctx, job)  # opened now, not at submit (README "Secrets")
    extra_env: dict[str, str] = {}
    if job.spec.console is not None:
        extra_env, console_secrets = console_variables(job, attempt, token, server_url=ctx.server_url, db=ctx.db)
        secrets = {**secrets, **console_secrets}
    resume = resume_from(ctx, job, attempt.number)
    specs = tuple(_rank_spec(ctx, job, attempt, token, rank, s, len(slices), secrets, resume, extra_env)
                  for rank, s in enumerate(slices))
    return Launch(specs[0], ranks=specs if len(specs) > 1 else ())


def resume_from(ctx: LaunchContext, job: Job, attempt: int) -> str | None:
    """What attempt ``attempt`` resumes from (README "Outputs and rounds"): the outputs of the job's
    latest earlier attempt that has any, so a restart or retry continues where the last one stopped;
    else, for a job cloned with ``--resume``, its source job's outputs as they are now."""
    store = ctx.store()
    found = resume_prefix(store, job.id, before=attempt) if attempt > 1 else None
    if found is None and job.resume_from:
        found = resume_prefix(store, job.resume_from)
    return found


def _rank_spec(ctx: LaunchContext, job: Job, attempt: Attempt, token: str, rank: int, where: NodeSlice,
               nnodes: int, secrets: dict[str, str], resume: str | None,
               extra_env: dict[str, str]) -> LaunchSpec:
    spec = job.spec
    return LaunchSpec(
        job_id=str(job.id),
        attempt=attempt.number,
        attempt_id=str(attempt.id),
        server_url=ctx.server_url,
        server_file=ctx.server_file,
        token=token,
        run_token=run_token(attempt.id, hash_token(token)) if token and ctx.server_url else "",
        experiment_id=str(job.experiment_id or ""),
        storage_url=ctx.settings.storage_url,
        snapshot_key=job.snapshot_key,
        # in place only when there is no snapshot and a folder was named; else an empty folder of its own
        workdir=None if job.snapshot_key else spec.workdir,
        resume_prefix=resume,
        output_prefix=None if rank else attempt_output_prefix(job.id, attempt.number),  # outputs come from rank 0
        log_key=log_key(job.id, attempt.number, rank),
        run_dir=ctx.settings.runs_dir / run_dir_name(job.id, attempt.number, rank),
        argv=command_argv(spec.argv(), spec.params),  # {NAME} filled in here, as run --local does
        # a name both in env and secrets is the platform's secret (a console's token): the spec's value goes
        env={k: v for k, v in {**spec.env, **params_env(spec.params), **extra_env}.items() if k not in secrets},
        secrets=secrets,
        gpus=list(where.gpus),
        max_runtime=spec.max_runtime,  # every rank's supervisor enforces it itself
        sync_interval=spec.sync_interval,
        stop_grace=ctx.settings.stop_grace,
        heartbeat_interval=ctx.heartbeat_interval,
        disk_full_grace=ctx.settings.heartbeat_timeout / 2,
        sample_interval=ctx.sample_interval,
        dataset=job.dataset,  # pinned "name:version", materialised before the command starts
        dataset_cache=dataset_cache_dir(ctx.settings),
        environment=environment_for(ctx.settings, image=spec.image, requirements=spec.requirements),
        sandbox=Sandbox(cpus=attempt.resources.cpus, memory=attempt.resources.memory,
                        cpuset=list(where.cores), run_as=run_as(ctx, job)),
        distributed=Distributed(node_rank=rank, nnodes=nnodes, nproc_per_node=spec.local_world_size,
                                node_id=where.node),
        max_snapshot_bytes=ctx.settings.max_snapshot_bytes,
        max_snapshot_files=ctx.settings.max_snapshot_files,
        metric_patterns=list(spec.metric_patterns),
    )
