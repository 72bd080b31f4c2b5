"""A run's artifacts as the MLflow client sees them (``mlflow-artifacts:/runs/ID/artifacts``): list, read, write, delete.

Nomenclature: an *artifact path* is what the client names, ``runs/ID/artifacts[/REST]``, or a
logged model's ``models/M-ID/artifacts[/REST]`` (services/logged_models.py: its files lie in its run's
artifacts under ``models/M-ID/``, of the attempt it was created in), or a registered model version's
``registry/RM-ID/versions/N[/REST]`` (services/registry.py: its copy, read only, its owner's; a job's
token reads none); REST is relative to that root.
Where a run's artifacts lie in the store is decided in artifacts/keys.py (``run_artifact_key``): for
a job, beside its latest attempt's outputs (listed among them under ``mlflow/``, artifacts/outputs.py);
for a run with no process, among the job's outputs. This module owns who reaches them (the run's
owner, or an admin; a job's run token its own run only: anything else is a run not found), which
paths are allowed, and the size of one upload.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import IO, Any

from modelyard.artifacts.keys import registry_prefix, run_artifact_key
from modelyard.artifacts.store import PARTIAL, ArtifactStore
from modelyard.db import jobs as store_jobs
from modelyard.db import logged_models as store_models
from modelyard.db import registry as store_registry
from modelyard.db.engine import Database
from modelyard.db.records import Job, User
from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.jobs.units import format_size

_ROOT = re.compile(r"runs/(\d{1,18})/artifacts(?:/(.*))?", re.S)
_MODEL_ROOT = re.compile(r"models/(m-[0-9a-f]{32})/artifacts(?:/(.*))?", re.S)
_VERSION_ROOT = re.compile(r"registry/(\d{1,18})/versions/(\d{1,9})(?:/(.*))?", re.S)
MODELS = "models"  # the folder of a run's artifacts its logged models' files lie in
MAX_PATH = 1024


def artifact_uri(job_id: int) -> str:
    """The ``artifact_uri`` of job ``job_id``'s run, as the tracking API gives it to the client."""
    return f"mlflow-artifacts:/runs/{job_id}/artifacts"


def model_artifact_uri(model_id: str) -> str:
    """The ``artifact_location`` of a logged model (services/logged_models.py): its own root, so its
    files stay where they were written when its run gets another attempt."""
    return f"mlflow-artifacts:/{MODELS}/{model_id}/artifacts"


@dataclass(frozen=True)
class Located:
    """Where one artifact path of a run lies: the job, its attempt that keeps its artifacts, the store key."""
    job: Job | None  # None: a registered model version's files (read only)
    attempt: int | None  # None: the run has no attempt; its artifacts lie among the job's outputs
    path: str  # relative to the run's artifact root; "": the root
    key: str


@dataclass(frozen=True)
class RunArtifactService:
    db: Database
    storage: ArtifactStore
    max_bytes: int  # one upload (MODELYARD_MAX_ARTIFACT)

    def locate(self, user: User, artifact_path: str, *, only_run: int | None = None, folder: bool = False) -> Located:
        """``runs/ID/artifacts[/REST]`` of a run ``user`` reaches (``only_run``: a job's token, its own
        run only). ``folder``: a trailing ``/`` is allowed (a listing)."""
        if "\x00" in artifact_path or "\\" in artifact_path:
            raise _invalid(f"artifact path {artifact_path!r} has a NUL or a backslash")
        if artifact_path.startswith("/"):
            raise _invalid(f"artifact path {artifact_path!r} is absolute; it must be runs/<run id>/artifacts/<path>")
        match = _ROOT.fullmatch(artifact_path) or _MODEL_ROOT.fullmatch(artifact_path) \
            or _VERSION_ROOT.fullmatch(artifact_path)
        if match is None:
            raise _invalid(f"artifact path {artifact_path!r} is not runs/<run id>/artifacts/<path> "
                           "or models/<model id>/artifacts/<path>")
        rest = match.group(match.re.groups) or ""
        if folder and rest.endswith("/"):
            rest = rest[:-1]
        _check_path(rest, artifact_path, root_ok=True)
        if match.re is _MODEL_ROOT:
            return self._at_model(user, match.group(1), rest, only_run)
        if match.re is _VERSION_ROOT:
            return self._at_version(user, int(match.group(1)), int(match.group(2)), rest, only_run)
        return self._at(user, int(match.group(1)), rest, only_run)

    def listing(self, user: User, artifact_path: str, *, only_run: int | None = None) -> list[dict[str, Any]]:
        """The files and folders directly in a folder of the run's artifacts; none for a file or nothing there."""
        at = self.locate(user, artifact_path, only_run=only_run, folder=True)
        return self._children(at)

    def file(self, user: User, artifact_path: str, *, only_run: int | None = None) -> tuple[str, int]:
        """The store key and size of one artifact file."""
        at = self.locate(user, artifact_path, only_run=only_run)
        if not at.path or not self.storage.is_file(at.key):
            raise not_found(f"artifact {at.path or '/'!r}" + (f" of run {at.job.id}" if at.job else ""))
        return at.key, self.storage.size(at.key)

    def upload(self, user: User, artifact_path: str, body: IO[bytes], *, only_run: int | None = None,
               declared: int | None = None) -> int:
        """Store one file from ``body``, streamed (never whole in memory); returns its size.
        Over ``max_bytes`` (declared, or as it arrives) it is refused and nothing is kept."""
        at = self.locate(user, artifact_path, only_run=only_run)
        if not at.path:
            raise _invalid(f"artifact path {artifact_path!r} names no file")
        if at.job is None:
            raise _read_only()
        if at.attempt is None and at.job.has_process:
            raise ModelyardError(ErrorCode.CONFLICT, f"job {at.job.id} has not started: its artifacts are kept with "
                                 "an attempt's outputs, so log them once it runs")
        if declared is not None and declared > self.max_bytes:
            raise self._too_large()
        return self.storage.put_stream(_Limited(body, self.max_bytes, self._too_large), at.key)

    def delete(self, user: User, artifact_path: str, *, only_run: int | None = None) -> None:
        """Remove one artifact, or a folder of them (the root: all the run's artifacts)."""
        at = self.locate(user, artifact_path, only_run=only_run, folder=True)
        if at.job is None:
            raise _read_only()
        if at.attempt is None and at.job.has_process:
            return  # nothing can be there yet
        self.storage.delete_prefix(at.key)

    def run_listing(self, user: User, run_id: str, path: str | None, *, only_run: int | None = None) -> dict[str, Any]:
        """The tracking API's ``artifacts/list``: paths relative to the run's root, as MLflow gives them."""
        if not run_id.isdigit() or len(run_id) > 18:
            raise not_found(f"run {run_id!r}")
        rest = (path or "").removesuffix("/")
        _check_path(rest, path or "", root_ok=True)
        at = self._at(user, int(run_id), rest, only_run)
        files = [{**f, "path": f"{rest}/{f['path']}" if rest else f["path"]} for f in self._children(at)]
        assert at.job is not None  # a run's root, never a registered version's
        return {"root_uri": artifact_uri(at.job.id), "files": files}

    def _at(self, user: User, job_id: int, rest: str, only_run: int | None) -> Located:
        if only_run is not None and job_id != only_run:
            raise not_found(f"run {job_id}")
        try:
            job = store_jobs.get_job(self.db, job_id, user=user)
        except ModelyardError as e:
            if e.code == ErrorCode.NOT_FOUND:
                raise not_found(f"run {job_id}") from None
            raise
        attempt = job.attempt if job.has_process and job.attempt else None
        return Located(job, attempt, rest, run_artifact_key(job.id, attempt, rest))

    def _at_model(self, user: User, model_id: str, rest: str, only_run: int | None) -> Located:
        """A logged model's files: in its run's MLflow artifacts, under ``models/ID/``, of the attempt
        that was the run's when the model was created. Reached as its run is (a deleted model: not)."""
        model = store_models.get(self.db, model_id)
        if model is None or model.deleted_at is not None:
            raise not_found(f"logged model {model_id}")
        try:
            at = self._at(user, model.job_id, "", only_run)
        except ModelyardError as e:
            if e.code == ErrorCode.NOT_FOUND:
                raise not_found(f"logged model {model_id}") from None
            raise
        path = f"{MODELS}/{model_id}/{rest}" if rest else f"{MODELS}/{model_id}"
        return Located(at.job, model.attempt, path, run_artifact_key(model.job_id, model.attempt, path))

    def _at_version(self, user: User, model_id: int, version: int, rest: str, only_run: int | None) -> Located:
        """A registered model version's files (services/registry.py): its owner's (an admin's), read
        only; a job's token reads none (it may only register its own run's models)."""
        model = store_registry.get_model_by_id(self.db, model_id)
        if only_run is not None or model is None or (model.user_id != user.id and not user.is_admin) \
                or store_registry.get_version(self.db, model_id, version) is None:
            raise not_found(f"model version {version} of registered model {model_id}")
        key = registry_prefix(model_id, version)
        return Located(None, None, rest, f"{key}/{rest}" if rest else key)

    def _children(self, at: Located) -> list[dict[str, Any]]:
        if at.path and self.storage.is_file(at.key):
            return []  # MLflow lists a file as nothing
        if at.attempt is None and at.job is not None and at.job.has_process:
            return []
        children: dict[str, dict[str, Any]] = {}
        for e in self.storage.list(at.key):
            head, sub, _ = e.path.partition("/")
            children[head] = {"path": head, "is_dir": True} if sub else {"path": head, "is_dir": False,
                                                                            "file_size": e.size}
        return [children[name] for name in sorted(children)]

    def _too_large(self) -> ModelyardError:
        return ModelyardError(ErrorCode.TOO_LARGE, f"the artifact is over the limit of {format_size(self.max_bytes)} "
                              f"({self.max_bytes} bytes, MODELYARD_MAX_ARTIFACT)", field="body")


def _check_path(rest: str, whole: str, *, root_ok: bool) -> None:
    """REST must be a plain relative path: no empty, ``.`` or ``..`` segment, not overlong."""
    if not rest:
        if root_ok:
            return
        raise _invalid(f"artifact path {whole!r} names no file")
    if "\x00" in rest or "\\" in rest:
        raise _invalid(f"artifact path {whole!r} has a NUL or a backslash")
    if rest.startswith("/"):
        raise _invalid(f"artifact path {whole!r} is absolute; name a path relative to the run's artifacts")
    if len(rest) > MAX_PATH:
        raise _invalid(f"artifact path is over {MAX_PATH} characters")
    for segment in rest.split("/"):
        if segment in ("", ".", ".."):
            raise _invalid(f"artifact path {whole!r} has an empty, '.' or '..' segment")
        if PARTIAL in segment:
            raise _invalid(f"artifact path {whole!r}: {PARTIAL!r} is reserved for uploads in progress")


def _read_only() -> ModelyardError:
    return ModelyardError(ErrorCode.FORBIDDEN, "a registered model version's files are read only: register "
                          "a new version, or delete this one with delete_model_version")


def _invalid(message: str) -> ModelyardError:
    return ModelyardError(ErrorCode.INVALID, message, field="path")


class _Limited:
    """A readable stream that refuses to give more than ``limit`` bytes in all."""

    def __init__(self, body: IO[bytes], limit: int, error: Callable[[], ModelyardError]) -> None:
        self.body, self.limit, self.error, self.read_so_far = body, limit, error, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.body.read(size)
        self.read_so_far += len(chunk)
        if self.read_so_far > self.limit:
            raise self.error()
        return chunk
