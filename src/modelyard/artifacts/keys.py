"""The layout of keys in the artifact store, in one place: every writer and reader builds keys here.

    snapshots/SHA256.tar.gz                    a code snapshot, by content (shared by the jobs that send it)
    jobs/ID/attempts/N/log.txt                 attempt N's log as its supervisor wrote it (log-nodeR.txt: node rank R's)
    jobs/ID/attempts/N/log.jsonl, log.idx      an ended attempt's log once it left the db (artifacts/logarchive.py)
    jobs/ID/attempts/N/outputs/...             attempt N's outputs; .../outputs/final/ is the job's model
    jobs/ID/attempts/N/mlflow/...              what attempt N's MLflow client uploaded (the output sync never writes here)
    jobs/ID/attempts/N/mlflow/models/M-ID/...  the files of logged model M-ID, created while attempt N ran
    jobs/ID/outputs                            a job's outputs before they were kept per attempt (read only),
                                               and the MLflow artifacts of a run with no process
    datasets/NAME/VERSION/...                  a dataset version's manifest and files
    registry/ID/versions/N/...                 registered model ID's version N: a copy of its source's files
"""
from __future__ import annotations

SNAPSHOTS = "snapshots/"


def snapshot_key(sha256_hex: str) -> str:
    return f"{SNAPSHOTS}{sha256_hex}.tar.gz"


def is_snapshot_key(key: str) -> bool:
    return key.startswith(SNAPSHOTS) and "/" not in key[len(SNAPSHOTS):] and key.endswith(".tar.gz")


def job_prefix(job_id: int) -> str:
    """Everything a job keeps in the store lies under this."""
    return f"jobs/{job_id}"


def output_prefix(job_id: int) -> str:
    """Where outputs were kept before each attempt had its own: read back for older jobs."""
    return f"jobs/{job_id}/outputs"


def attempts_prefix(job_id: int) -> str:
    """Every attempt's folder lies under this: one listing of it finds each attempt's outputs."""
    return f"jobs/{job_id}/attempts"


def attempt_prefix(job_id: int, attempt: int) -> str:
    return f"{attempts_prefix(job_id)}/{attempt}"


OUTPUTS = "outputs"
FINAL = "final"  # the folder under MODELYARD_OUTPUT_DIR a job leaves its model in


def attempt_output_prefix(job_id: int, attempt: int) -> str:
    return f"{attempt_prefix(job_id, attempt)}/{OUTPUTS}"


def split_attempt_output(relative: str) -> tuple[int, str] | None:
    """``N/outputs/PATH`` (a path under ``attempts_prefix``) as ``(N, PATH)``; None for anything else (logs)."""
    number, _, rest = relative.partition("/")
    folder, _, path = rest.partition("/")
    if not number.isdigit() or folder != OUTPUTS or not path:
        return None
    return int(number), path


MLFLOW = "mlflow"  # beside an attempt's outputs, and the folder its MLflow artifacts show in among them


def run_artifact_key(job_id: int, attempt: int | None, path: str = "") -> str:
    """Where artifact ``path`` (relative to the run's artifact root; "": the root) that the MLflow
    client uploads for job ``job_id``'s run is kept: beside attempt ``attempt``'s outputs, where the
    output sync cannot overwrite it; with no attempt (a run with no process), among the job's outputs."""
    root = output_prefix(job_id) if attempt is None else f"{attempt_prefix(job_id, attempt)}/{MLFLOW}"
    return f"{root}/{path}" if path else root


def split_run_artifact(relative: str) -> tuple[int, str] | None:
    """``N/mlflow/PATH`` (a path under ``attempts_prefix``) as ``(N, PATH)``; None for anything else."""
    number, _, rest = relative.partition("/")
    folder, _, path = rest.partition("/")
    if not number.isdigit() or folder != MLFLOW or not path:
        return None
    return int(number), path


def is_final(path: str) -> bool:
    """Whether an output's path (relative to its outputs folder) is part of the job's model."""
    return path.startswith(f"{FINAL}/")


def final_prefix(job_id: int, attempt: int) -> str:
    return f"{attempt_output_prefix(job_id, attempt)}/{FINAL}"


def log_key(job_id: int, attempt: int, node_rank: int = 0) -> str:
    """Where an attempt's log.txt is kept; a node rank > 0 keeps its own beside rank 0's."""
    name = f"log-node{node_rank}.txt" if node_rank else "log.txt"
    return f"{attempt_prefix(job_id, attempt)}/{name}"


def log_archive_key(job_id: int, attempt: int) -> str:
    """An ended attempt's log, every node rank's lines numbered as the db numbered them (artifacts/logarchive.py)."""
    return f"{attempt_prefix(job_id, attempt)}/log.jsonl"


def log_index_key(job_id: int, attempt: int) -> str:
    """The byte offset of every LOG_INDEX_EVERY-th line of ``log_archive_key``."""
    return f"{attempt_prefix(job_id, attempt)}/log.idx"


def is_final_key(key: str, job_id: int, attempts: int) -> bool:
    """Whether ``key`` lies under a final/ of the job (any attempt's, or the pre-attempt outputs')."""
    prefixes = [f"{output_prefix(job_id)}/{FINAL}/"] + [f"{final_prefix(job_id, n)}/" for n in range(1, attempts + 1)]
    return any(key.startswith(p) for p in prefixes)


def dataset_version_prefix(name: str, version: str) -> str:
    return f"datasets/{name}/{version}"


def registry_prefix(registered_model_id: int, version: int | None = None) -> str:
    """A registered model's versions' files (``version``: that one's), copied there when registered."""
    base = f"registry/{registered_model_id}"
    return base if version is None else f"{base}/versions/{version}"
