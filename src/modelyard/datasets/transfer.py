"""Moving a version's files between a local folder and the artifact store: streamed in
chunks, several files at once, with one progress callback ``progress(bytes_done, total)``
(called from worker threads, one call at a time), and every download checked
against the manifest's sha256.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, TypeVar

from modelyard.datasets.manifest import FileEntry
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.artifacts import ArtifactStore

Progress = Callable[[int, int], None]
T = TypeVar("T")
_CHUNK = 4 * 1024 * 1024
_WORKERS = 8


class _Meter:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        if self.progress is None or n == 0:
            return
        with self.lock:
            self.done += n
            self.progress(self.done, self.total)


class _MeteredReader:
    """A read-only file that reports what is read through it."""

    def __init__(self, f: IO[bytes], meter: _Meter) -> None:
        self.f, self.meter = f, meter

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.meter.add(len(data))
        return data


def upload(store: ArtifactStore, local_root: Path, prefix: str, files: list[FileEntry], progress: Progress | None) -> None:
    meter = _Meter(sum(f.size for f in files), progress)

    def one(entry: FileEntry) -> None:
        with open(local_root / entry.path, "rb") as f:
            store.put_stream(_MeteredReader(f, meter), f"{prefix}/{entry.path}")  # type: ignore[arg-type]

    run_parallel(one, files)


def download(store: ArtifactStore, prefix: str, files: list[FileEntry], local_root: Path, progress: Progress | None) -> None:
    """Fetch ``files`` under ``local_root``; UNAVAILABLE when one does not match its sha256."""
    meter = _Meter(sum(f.size for f in files), progress)

    def one(entry: FileEntry) -> None:
        target = local_root / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        h, size = hashlib.sha256(), 0
        with store.open(f"{prefix}/{entry.path}") as src, open(target, "wb") as dst:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                dst.write(chunk)
                size += len(chunk)
                meter.add(len(chunk))
        if size != entry.size or h.hexdigest() != entry.sha256:
            raise ModelyardError(ErrorCode.UNAVAILABLE, f"{prefix}/{entry.path} in the artifact store is corrupt: "
                                 f"{size} bytes with sha256 {h.hexdigest()[:16]}..., the manifest says "
                                 f"{entry.size} bytes with {entry.sha256[:16]}...")

    run_parallel(one, files)


def run_parallel(fn: Callable[[T], None], items: Iterable[T]) -> None:
    """``fn`` over ``items`` in a few threads; the first failure cancels the rest and is raised."""
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        futures = [pool.submit(fn, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and future.exception() is not None:
                for other in futures:
                    other.cancel()
                raise future.exception()  # type: ignore[misc]
