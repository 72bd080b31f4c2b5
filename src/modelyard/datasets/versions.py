"""Creating a dataset version: read, split, format, hash, upload, and the manifest last.

Store layout of a version::

    datasets/<name>/<version>/<split>/...      the formatted files, a folder per split
    datasets/<name>/<version>/manifest.json    written last: the version exists once it does

A create that fails leaves no manifest and deletes what it uploaded; creating the
same content again returns the existing version unchanged.
"""
from __future__ import annotations

import gzip
import struct
import tempfile
import zipfile
from pathlib import Path

import lmdb
import pyarrow as pa

from modelyard.datasets.bounds import Limits
from modelyard.datasets.build import Built, build
from modelyard.datasets.formats import check_format
from modelyard.datasets.index import DatasetIndex
from modelyard.datasets.manifest import MANIFEST, Manifest, content_version, hash_tree, now_iso
from modelyard.datasets.names import validate_name
from modelyard.datasets.readers import Source, open_source
from modelyard.datasets.splits import parse_split
from modelyard.datasets.transfer import Progress, upload
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.artifacts import ArtifactStore

# What reading a malformed or unreachable source raises, below ModelyardError.
_READ_ERRORS = (OSError, ValueError, EOFError, struct.error, zipfile.BadZipFile, gzip.BadGzipFile,
                pa.ArrowException, lmdb.Error)


def create_dataset(
    store: ArtifactStore,
    index: DatasetIndex,
    name: str,
    source: str,
    *,
    split: str | dict[str, float] | None = None,
    seed: int = 0,
    fmt: str | None = None,
    description: str | None = None,
    label_column: str | None = None,
    data_key: str | None = None,
    kind: str | None = None,
    progress: Progress | None = None,
    work_dir: str | Path | None = None,
    limits: Limits | None = None,
) -> Manifest:
    """Import ``source`` as a new version of ``name`` (or return the identical existing one);
    ``limits`` bound what an array source's headers may declare (``bounds``)."""
    validate_name(name)
    ratios = parse_split(split)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ModelyardError(ErrorCode.INVALID, f"seed must be a whole number from 0, not {seed!r}", field="seed")
    fmt = check_format(fmt)
    with tempfile.TemporaryDirectory(prefix="modelyard-dataset-", dir=work_dir) as tmp:
        src, built = _read(source, kind, label_column, data_key, fmt, ratios, seed, Path(tmp), limits)
        files = hash_tree(Path(tmp))
        version = content_version(fmt, files, [s.name for s in built.splits])
        for existing in index.versions(name):
            if existing.version == version:
                return existing
        manifest = Manifest(
            name=name, version=version, created=now_iso(), source=src.url, source_kind=src.kind, format=fmt,
            seed=seed, splits=built.splits, files=files, size=sum(f.size for f in files),
            description=description, classes=built.classes, details=src.describe(),
        )
        _publish(store, index, manifest, Path(tmp), progress)
    return manifest


def _read(source: str, kind: str | None, label_column: str | None, data_key: str | None, fmt: str,
          ratios: dict[str, float] | None, seed: int, dest: Path, limits: Limits | None) -> tuple[Source, Built]:
    try:
        src: Source = open_source(source, kind=kind, label_column=label_column, data_key=data_key, limits=limits)
        check_format(fmt, src.kind)
        return src, build(src, ratios, seed, fmt, dest)
    except ModelyardError:
        raise
    except _READ_ERRORS as e:
        raise ModelyardError(ErrorCode.INVALID, f"cannot read {source}: {e}", field="source") from e


def _publish(store: ArtifactStore, index: DatasetIndex, manifest: Manifest, local: Path, progress: Progress | None) -> None:
    try:
        upload(store, local, manifest.prefix, manifest.files, progress)
        store.put_bytes(manifest.to_json(), f"{manifest.prefix}/{MANIFEST}")
        index.add(manifest)
    except BaseException as e:
        _quietly_delete(store, manifest.prefix)
        if isinstance(e, OSError):
            raise ModelyardError(ErrorCode.UNAVAILABLE, f"uploading {manifest.ref} failed: {e}") from e
        raise


def _quietly_delete(store: ArtifactStore, prefix: str) -> None:
    try:
        store.delete_prefix(prefix)
    except Exception:  # the upload's own failure is what the caller needs to see
        pass
