"""A job's outputs as its owner sees them: the listing and the files, for the API and the job page alike.

Which attempt's outputs are the job's is decided in artifacts/outputs.py; this
module adds who may see them (the job's owner, or an admin: ``get_job``), the
attempt a caller names (one the job does not have is not found), and the paths
a caller may ask for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.artifacts.keys import is_final
from modelyard.artifacts.outputs import Outputs, job_outputs
from modelyard.artifacts.store import ArtifactStore
from modelyard.db import jobs as store_jobs
from modelyard.db.engine import Database
from modelyard.db.records import Job, User
from modelyard.errors import ErrorCode, ModelyardError, not_found


@dataclass(frozen=True)
class OutputService:
    db: Database
    storage: ArtifactStore

    def outputs(self, user: User, job_id: int, *, attempt: int | None = None, final: bool = False) -> Outputs:
        """Attempt ``attempt``'s outputs (None or 0: the job's); ``final``: only its model."""
        job = store_jobs.get_job(self.db, job_id, user=user)
        return job_outputs(self.storage, job.id, attempt=self._attempt(job, attempt), final=final)

    def listing(self, user: User, job_id: int, *, attempt: int | None = None, final: bool = False) -> dict[str, Any]:
        """The API's and the page's outputs: which attempt, the attempts that have any, the files (the model's marked)."""
        out = self.outputs(user, job_id, attempt=attempt, final=final)
        return {"attempt": out.attempt, "attempts": out.with_outputs, "model_attempts": out.with_model,
                "files": [{"path": e.path, "size": e.size, "mtime": e.mtime, "final": is_final(e.path)}
                          for e in out.files]}

    def file_key(self, user: User, job_id: int, path: str, *, attempt: int | None = None) -> tuple[str, int]:
        """The store key and size of output ``path`` of attempt ``attempt`` (None: of the job's outputs)."""
        if not path or ".." in path.split("/") or path.startswith("/"):
            raise ModelyardError(ErrorCode.INVALID, "not a path inside the job's outputs", field="path")
        out = self.outputs(user, job_id, attempt=attempt)
        entry = next((e for e in out.files if e.path == path), None)  # a file of the listing: never a folder
        if entry is None:
            raise not_found(f"output {path!r} of job {job_id}" + (f" attempt {attempt}" if attempt else ""))
        return out.key(path), entry.size

    def _attempt(self, job: Job, number: int | None) -> int | None:
        if not number:
            return None
        if store_jobs.attempt_by_number(self.db, job.id, number) is None:
            raise not_found(f"attempt {number} of job {job.id}")
        return number
