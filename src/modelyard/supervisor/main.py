"""Entry points: the supervisor process (``main``) and ``run --local`` (``run_local``).

``main`` exits 0 once the final report was acknowledged, 1 when it was given
up on, 2 for a bad config; in local mode (``server_url`` null) it exits with
the job's own exit code instead, as ``run_local`` returns it.
"""
from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from modelyard.errors import ModelyardError
from modelyard.jobs.launch import Distributed, Environment
from modelyard.artifacts import extract_snapshot, make_snapshot
from modelyard.artifacts.snapshot import Progress
from modelyard.supervisor.attempt import Outcome, run_attempt
from modelyard.supervisor.config import RunDirs, SupervisorConfig

DEFAULT_MAX_SNAPSHOT = 200 * 1024 * 1024


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--zygote"]:
        # LocalExecutor's pre-forked parent of supervisors (zygote.py); launched under this
        # module's name so that it and its forks read as supervisors in a process listing
        from modelyard.supervisor.zygote import serve

        return serve()
    if len(args) != 1:
        print("usage: python -m modelyard.supervisor CONFIG.json", file=sys.stderr)
        return 2
    try:
        config = SupervisorConfig.load(args[0])
    except ModelyardError as e:
        print(f"modelyard supervisor: {e}", file=sys.stderr)
        return 2
    try:
        outcome = run_attempt(config)
    except Exception as e:  # the process boundary: one line, the traceback only on request
        print(f"modelyard supervisor: {e!r}", file=sys.stderr)
        if os.environ.get("MODELYARD_DEBUG"):
            traceback.print_exc()
        return 1
    if config.local_mode:
        return outcome.shell_exit_code
    return 0 if outcome.delivered else 1


def run_local(
    argv: Sequence[str],
    *,
    workdir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    gpus: Sequence[int] = (),
    resume_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    max_runtime: float | None = None,
    stop_grace: float = 10.0,
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT,
    job_id: str = "local",
    attempt: int = 1,
    snapshot_progress: Progress | None = None,
    environment: Environment | None = None,
    distributed: Distributed | None = None,
    metric_patterns: Sequence[str] = (),
) -> Outcome:
    """Run ``argv`` in the foreground exactly as the platform would, printing its output.

    ``workdir`` is snapshotted (.gitignore respected; TOO_LARGE past
    ``max_snapshot_bytes``) and unpacked into ``run_dir/code``, where the command
    runs with the platform's variables; outputs land in ``run_dir/output``. Keep
    ``run_dir`` outside ``workdir``. Ctrl-C stops the job (SIGTERM, grace, SIGKILL).
    ``environment`` is what the command runs in, as for a job (e.g. a requirements venv
    from this machine's cache). Exit with ``outcome.shell_exit_code``.
    """
    dirs = RunDirs(Path(run_dir).resolve())
    dirs.create()
    _copy_code(Path(workdir), dirs, max_snapshot_bytes, snapshot_progress)
    config = SupervisorConfig(
        job_id=job_id, attempt=attempt, argv=list(argv), run_dir=dirs.root,
        workdir=dirs.code, env=dict(env or {}), gpus=list(gpus),
        resume_dir=Path(resume_dir).resolve() if resume_dir else None,
        data_dir=Path(data_dir).resolve() if data_dir else None,
        max_runtime=max_runtime, stop_grace=stop_grace, environment=environment or Environment(),
        distributed=distributed or Distributed(), metric_patterns=list(metric_patterns),
    )
    return run_attempt(config)


def _copy_code(workdir: Path, dirs: RunDirs, max_bytes: int, progress: Progress | None) -> None:
    """Through a real snapshot, so a local run sees exactly the files a submitted job would."""
    with tempfile.TemporaryFile(dir=dirs.root) as tmp:
        make_snapshot(workdir, tmp, max_bytes, progress=progress)
        tmp.seek(0)
        extract_snapshot(tmp, dirs.code)
