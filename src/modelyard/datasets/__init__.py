"""Datasets: import a source, split it, format it, keep it as an immutable content-hashed
version in the artifact store, and materialise it for jobs.

    create_dataset(store, index, name, source, ...)  -> Manifest   (versions)
    list_datasets / get_version / remove_dataset                    (lookup)
    materialise(store, ref_or_manifest, cache_dir)   -> Path       (materialise)

Modules: ``readers`` (sources), ``splits``, ``formats`` (writers), ``build`` (a version
in a local folder), ``manifest``, ``index`` (where versions are listed), ``transfer``
(uploads and verified downloads), ``versions`` (create), ``lookup`` (find, list, remove),
``materialise`` (the job cache).
"""
from modelyard.datasets.formats import DEFAULT_FORMAT, FORMATS
from modelyard.datasets.index import DatasetIndex, StoreIndex
from modelyard.datasets.manifest import FileEntry, Manifest, SplitInfo
from modelyard.datasets.materialise import cache_problems, materialise
from modelyard.datasets.names import Ref, parse_ref, validate_name
from modelyard.datasets.readers import SOURCE_KINDS, open_source
from modelyard.datasets.splits import parse_split
from modelyard.datasets.transfer import Progress
from modelyard.datasets.lookup import InUse, get_version, list_datasets, remove_dataset
from modelyard.datasets.versions import create_dataset

__all__ = [
    "DEFAULT_FORMAT", "FORMATS", "SOURCE_KINDS",
    "DatasetIndex", "StoreIndex", "FileEntry", "Manifest", "SplitInfo", "Ref", "Progress", "InUse",
    "create_dataset", "list_datasets", "get_version", "remove_dataset", "materialise", "cache_problems",
    "open_source", "parse_split", "parse_ref", "validate_name",
]
