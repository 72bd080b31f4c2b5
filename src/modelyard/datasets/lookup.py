"""Finding and removing dataset versions: ``NAME`` (the latest), ``NAME:VERSION`` (a unique
prefix of the version will do), every version of a name, and removal that refuses
while queued or running jobs use a version (the caller says which through ``in_use``).

Kept apart from creating versions so that the job side (materialise) imports no
readers or format libraries.
"""
from __future__ import annotations

from collections.abc import Callable

from modelyard.datasets.index import DatasetIndex
from modelyard.datasets.manifest import Manifest, version_prefix
from modelyard.datasets.names import parse_ref, validate_name
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.artifacts import ArtifactStore

InUse = Callable[[str, str], list[int]]  # (name, version) -> ids of the queued or running jobs using it


def list_datasets(index: DatasetIndex, name: str | None = None) -> list[Manifest]:
    """Every version (of ``name``, or of all datasets), by name, then oldest first."""
    names = [validate_name(name)] if name is not None else index.names()
    return [m for n in names for m in index.versions(n)]


def get_version(index: DatasetIndex, ref: str) -> Manifest:
    """``NAME`` -> its latest version; ``NAME:VERSION`` -> that one (a unique prefix will do)."""
    r = parse_ref(ref)
    versions = index.versions(r.name)
    if not versions:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"dataset {r.name} not found", field="dataset")
    if r.version is None:
        return versions[-1]
    matches = [m for m in versions if m.version.startswith(r.version)]
    if len(matches) > 1:
        raise ModelyardError(ErrorCode.INVALID, f"{ref} is ambiguous: {', '.join(m.ref for m in matches)}", field="dataset")
    if not matches:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"dataset {ref} not found; versions of {r.name}: "
                             f"{', '.join(m.version for m in versions)}", field="dataset")
    return matches[0]


def remove_dataset(store: ArtifactStore, index: DatasetIndex, ref: str, *, in_use: InUse | None = None,
                   delete_data: bool = True) -> list[Manifest]:
    """Remove ``NAME:VERSION``, or every version of ``NAME``; CONFLICT while a job uses one.
    ``delete_data=False`` removes only the manifests (the version is gone) and leaves the
    files for the caller to delete (``version_prefix``), e.g. after a transaction commits."""
    r = parse_ref(ref)
    targets = [get_version(index, ref)] if r.version else index.versions(r.name)
    if not targets:
        raise ModelyardError(ErrorCode.NOT_FOUND, f"dataset {r.name} not found", field="dataset")
    busy = {m.ref: jobs for m in targets if in_use and (jobs := sorted(in_use(m.name, m.version)))}
    if busy:
        used = "; ".join(f"{ref} by job{'s' if len(j) > 1 else ''} {', '.join(map(str, j))}" for ref, j in busy.items())
        raise ModelyardError(ErrorCode.CONFLICT, f"cannot remove a dataset version that queued or running jobs use: {used}",
                             field="dataset")
    for m in targets:
        index.remove(m)
        if delete_data:
            store.delete_prefix(version_prefix(m.name, m.version))
    return targets
