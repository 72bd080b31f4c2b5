"""Which outputs a job has: each attempt's, the job's (its latest attempt's that has any), its model.

Nomenclature: an attempt's *outputs* are the files its rank 0 synced from
``MODELYARD_OUTPUT_DIR`` (``attempt_output_prefix``); the job's *model* is the
part of them under ``final/``. What the attempt's MLflow client uploaded is kept
beside them (``run_artifact_key``: the output sync never writes there) and listed
among them under ``mlflow/``; a synced file of the same path hides it from the
listing, not from the MLflow client. A job from before outputs were kept per
attempt has one folder for all its attempts (``output_prefix``), read when none
of its attempts has any. The server's outputs listing and downloads, and the launcher's
choice of what a new attempt resumes from, all decide here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from modelyard.artifacts.keys import (
    MLFLOW, attempt_output_prefix, attempts_prefix, is_final, output_prefix, run_artifact_key, split_attempt_output,
    split_run_artifact,
)
from modelyard.artifacts.store import ArtifactStore, Entry


@dataclass(frozen=True)
class Outputs:
    """One attempt's outputs (``attempt`` None: the job's from before per-attempt outputs, or none)."""

    attempt: int | None
    prefix: str | None  # where ``files`` lie in the store; None: there are none
    files: list[Entry] = field(default_factory=list)
    with_outputs: list[int] = field(default_factory=list)  # the attempts that have any, ascending
    with_model: list[int] = field(default_factory=list)  # those that have a final/
    job_id: int = 0
    uploaded: frozenset[str] = frozenset()  # the paths of ``files`` that are MLflow artifacts (mlflow/...)

    def key(self, path: str) -> str:
        if path in self.uploaded:
            return run_artifact_key(self.job_id, self.attempt, path[len(MLFLOW) + 1:])
        assert self.prefix is not None
        return f"{self.prefix}/{path}"


def by_attempt(store: ArtifactStore, job_id: int, *, mlflow: bool = True) -> dict[int, list[Entry]]:
    """Every attempt's outputs, from one listing of the job's attempts folder (the logs beside them
    left out); ``mlflow``: with its MLflow artifacts under mlflow/."""
    return _listing(store, job_id, mlflow)[0]


def _listing(store: ArtifactStore, job_id: int, mlflow: bool) -> tuple[dict[int, list[Entry]], dict[int, set[str]]]:
    """``by_attempt``, and for each attempt the listed paths that are MLflow artifacts."""
    found: dict[int, list[Entry]] = {}
    uploaded: dict[int, list[Entry]] = {}
    for e in store.list(attempts_prefix(job_id)):
        if (split := split_attempt_output(e.path)) is not None:
            found.setdefault(split[0], []).append(Entry(split[1], e.size, e.mtime))
        elif mlflow and (split := split_run_artifact(e.path)) is not None:
            uploaded.setdefault(split[0], []).append(Entry(f"{MLFLOW}/{split[1]}", e.size, e.mtime))
    shown: dict[int, set[str]] = {}
    for n, entries in uploaded.items():
        synced = {e.path for e in found.get(n, [])}
        shown[n] = {e.path for e in entries} - synced  # the job's own file of that path wins the name
        found[n] = sorted(found.get(n, []) + [e for e in entries if e.path in shown[n]])
    return found, shown


def job_outputs(store: ArtifactStore, job_id: int, *, attempt: int | None = None, final: bool = False,
                before: int | None = None, mlflow: bool = True) -> Outputs:
    """The outputs of attempt ``attempt``, or by default the job's: its latest attempt's that has
    any (``before``: of the attempts numbered below it), else its outputs from before per-attempt
    ones. ``final``: only the model (``final/``), of the latest attempt that has one by default.
    ``mlflow``: with what the attempts' MLflow clients uploaded."""
    found, uploaded = _listing(store, job_id, mlflow)
    with_outputs = sorted(found)
    with_model = [n for n in with_outputs if any(is_final(e.path) for e in found[n])]
    if attempt is None:
        candidates = [n for n in (with_model if final else with_outputs) if before is None or n < before]
        attempt = candidates[-1] if candidates else None
    if attempt is not None:
        files = found.get(attempt, [])
        prefix: str | None = attempt_output_prefix(job_id, attempt)
    elif not with_outputs:
        files, prefix = store.list(output_prefix(job_id)), output_prefix(job_id)
    else:
        files, prefix = [], None
    if final:
        files = [e for e in files if is_final(e.path)]
    return Outputs(attempt, prefix if files or attempt is not None else None, files, with_outputs, with_model,
                   job_id, frozenset(uploaded.get(attempt, ())) if attempt is not None else frozenset())


def resume_prefix(store: ArtifactStore, job_id: int, *, before: int | None = None) -> str | None:
    """Where a new attempt of job ``job_id`` (numbered ``before``), or a job resuming from it
    (``before`` None), finds the outputs it resumes from (its output folder's: not its MLflow
    artifacts, which lie elsewhere); None when there are none."""
    outputs = job_outputs(store, job_id, before=before, mlflow=False)
    return outputs.prefix if outputs.files else None
