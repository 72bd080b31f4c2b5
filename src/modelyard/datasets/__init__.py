"""Datasets: import a source, split it, format it, keep it as an immutable content-hashed
version in the artifact store, and materialise it for jobs.

    create_dataset(store, index, name, source, ...)  -> Manifest   (versions)
    list_datasets / get_version / remove_dataset                    (lookup)
    materialise(store, ref_or_manifest, cache_dir)   -> Path       (materialise)

Modules: ``readers`` (sources), ``splits``, ``formats`` (writers), ``build`` (a version
in a local folder), ``manifest``, ``index`` (where versions are listed), ``transfer``
(uploads and verified downloads), ``versions`` (create), ``lookup`` (find, list, remove),
``materialise`` (the job cache), ``access`` (who may read and change a dataset: the policy;
owners are kept in ``store.datasets``), ``bounds`` (what a source may make the server hold).
"""
from __future__ import annotations

import importlib
from typing import Any

# Names load on first use (PEP 562): the writers pull in numpy, pyarrow and Pillow
# (~0.5 s), which a server start or a job without a dataset should not pay.
_WHERE = {
    "DEFAULT_FORMAT": "formats", "FORMATS": "formats",
    "DatasetIndex": "index", "StoreIndex": "index",
    "FileEntry": "manifest", "Manifest": "manifest", "SplitInfo": "manifest",
    "Ref": "names", "parse_ref": "names", "validate_name": "names",
    "SOURCE_KINDS": "readers", "open_source": "readers",
    "parse_split": "splits", "Progress": "transfer",
    "InUse": "lookup", "get_version": "lookup", "list_datasets": "lookup", "remove_dataset": "lookup",
    "create_dataset": "versions",
}

# ``materialise`` is both a submodule and its function: bound eagerly, or importing the
# submodule anywhere would leave the package attribute pointing at the module
from modelyard.datasets.materialise import cache_problems, materialise  # noqa: E402  (light: no writers)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'modelyard.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"modelyard.datasets.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_FORMAT", "FORMATS", "SOURCE_KINDS",
    "DatasetIndex", "StoreIndex", "FileEntry", "Manifest", "SplitInfo", "Ref", "Progress", "InUse",
    "create_dataset", "list_datasets", "get_version", "remove_dataset", "materialise", "cache_problems",
    "open_source", "parse_split", "parse_ref", "validate_name",
]
