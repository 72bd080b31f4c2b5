"""The local cache jobs read datasets from: ``<cache_dir>/<name>/<version>/``, one folder per
split plus a copy of ``manifest.json``, read-only, shared by every job on the machine.

One version is fetched once: a process takes an ``fcntl`` lock on
``<name>/.<version>.lock``, downloads into ``.<version>.partial-*`` next to the
target, checks every file's sha256 and renames the folder into place; a process
that waited on the lock finds the finished copy and uses it. A cached copy is
checked before use -- sizes and modification times against the stamp taken when
it was verified, or every sha256 with ``verify=True`` -- and fetched again when
it no longer matches.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelyard.datasets.index import DatasetIndex, StoreIndex
from modelyard.datasets.manifest import MANIFEST, Manifest, sha256_file
from modelyard.datasets.transfer import Progress, download
from modelyard.datasets.lookup import get_version
from modelyard.artifacts import ArtifactStore

_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def materialise(store: ArtifactStore, ref_or_manifest: str | Manifest, cache_dir: str | os.PathLike[str], *,
                index: DatasetIndex | None = None, verify: bool = False, progress: Progress | None = None) -> Path:
    """The local, verified, read-only folder of a dataset version, fetched if needed."""
    manifest = ref_or_manifest
    if not isinstance(manifest, Manifest):
        manifest = get_version(index or StoreIndex(store), manifest)
    parent = Path(cache_dir) / manifest.name
    parent.mkdir(parents=True, exist_ok=True)
    dest = parent / manifest.version
    with _locked(parent / f".{manifest.version}.lock"):
        if dest.exists():
            if not cache_problems(dest, manifest, full=verify):
                return dest
            _discard(dest)  # changed or damaged since it was verified: fetch a fresh copy
        _fetch(store, manifest, parent, dest, progress)
    return dest


def cache_problems(folder: Path, manifest: Manifest, *, full: bool = False) -> list[str]:
    """The files of a cached copy that differ from the manifest (empty: it is intact)."""
    stamp = _read_stamp(folder)
    problems = []
    for entry in manifest.files:
        path = folder / entry.path
        try:
            st = path.stat()
        except FileNotFoundError:
            problems.append(f"{entry.path}: missing")
            continue
        if st.st_size != entry.size or stamp.get(entry.path) != st.st_mtime_ns:
            problems.append(f"{entry.path}: changed since it was verified")
        elif full and sha256_file(path) != entry.sha256:
            problems.append(f"{entry.path}: sha256 differs")
    return problems


def _fetch(store: ArtifactStore, manifest: Manifest, parent: Path, dest: Path, progress: Progress | None) -> None:
    for stale in parent.glob(f".{manifest.version}.partial-*"):
        _discard(stale)  # left by a process that died mid-download
    tmp = parent / f".{manifest.version}.partial-{uuid.uuid4().hex}"
    try:
        download(store, manifest.prefix, manifest.files, tmp, progress)
        for split in manifest.splits:
            (tmp / split.name).mkdir(parents=True, exist_ok=True)  # an empty split is still a folder
        (tmp / MANIFEST).write_bytes(manifest.to_json())
        _write_stamp(tmp, manifest)
        _make_read_only(tmp)
        os.rename(tmp, dest)
    except BaseException:
        _discard(tmp)
        raise


def _stamp_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.stamp.json"


def _write_stamp(tmp: Path, manifest: Manifest) -> None:
    stamp = {e.path: (tmp / e.path).stat().st_mtime_ns for e in manifest.files}
    # named for the final folder: the rename keeps mtimes, so the stamp stays true
    _stamp_path(tmp.parent / manifest.version).write_text(json.dumps(stamp))


def _read_stamp(folder: Path) -> dict[str, int]:
    try:
        return dict(json.loads(_stamp_path(folder).read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def _make_read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), _READ_ONLY_FILE)
        os.chmod(dirpath, _READ_ONLY_DIR)


def _discard(folder: Path) -> None:
    if not folder.exists():
        return
    trash = folder.with_name(f".{folder.name.lstrip('.')}.trash-{uuid.uuid4().hex}")
    os.rename(folder, trash)  # out of the way at once; the slow delete follows
    for dirpath, _dirs, _files in os.walk(trash):
        os.chmod(dirpath, stat.S_IRWXU)
    shutil.rmtree(trash)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
