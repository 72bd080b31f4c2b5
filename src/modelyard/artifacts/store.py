"""The artifact store: one fsspec filesystem under one root URL, addressed by keys.

``ArtifactStore("file:///abs/path")`` or ``ArtifactStore("s3://bucket/prefix")``.
A *key* is a relative, ``/``-separated path under the store's root
(``jobs/7/outputs/model.pt``); a *prefix* is a key naming a folder. This module
owns how keys map to the backend, how writes become visible (never half-written
under the final key), and the incremental folder sync used for job outputs.
"""
from __future__ import annotations

import io
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import fsspec
from fsspec.core import url_to_fs

from modelyard.errors import ErrorCode, ModelyardError

CHUNK = 8 * 1024 * 1024
# Marks a local write in progress; list() hides such files, so no key may hold it (PARTIAL).
_PARTIAL = PARTIAL = ".modelyard-partial-"

# A file's fingerprint for sync: (size, mtime_ns). Same fingerprint -> not uploaded again.
Fingerprint = tuple[int, int]


class Entry(NamedTuple):
    path: str  # relative to the listed prefix, "/"-separated
    size: int
    mtime: float  # Unix time


@dataclass
class SyncResult:
    uploaded: list[str] = field(default_factory=list)  # relative paths
    bytes: int = 0
    skipped_links: list[str] = field(default_factory=list)  # "rel -> target": links out of the folder


class _Changed(NamedTuple):
    rel: str
    full: str  # the file itself: a link inside the folder is synced as the file it names
    fp: Fingerprint
    ident: tuple[int, int]  # (st_dev, st_ino) seen by the walk, checked again when opened


class ArtifactStore:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, root = url_to_fs(self.url, **backend_options(self.url))
        self.root = root.rstrip("/")
        self.is_local = "file" in _protocols(self.fs)
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    def path(self, key: str) -> str:
        """The backend path of ``key`` (validated: relative, no ``..``)."""
        parts = [p for p in key.strip("/").split("/") if p not in ("", ".")]
        if ".." in parts or key.startswith("/") or "\\" in key:
            raise ModelyardError(ErrorCode.INVALID, f"bad artifact key {key!r}", field="key")
        return "/".join([self.root, *parts]) if parts else self.root

    # -- writing ---------------------------------------------------------------

    def put_file(self, local: str | os.PathLike[str], key: str) -> int:
        """Upload one local file; returns its size."""
        with open(local, "rb") as f:
            return self.put_stream(f, key)

    def put_stream(self, fileobj: IO[bytes], key: str, *, chunk_size: int = CHUNK) -> int:
        """Copy a readable binary stream to ``key`` in chunks; returns the bytes written.

        The object appears under ``key`` only once complete: locally through a
        rename, on S3 because an upload is published when it completes.
        """
        path = self.path(key)
        if self.is_local:
            return self._put_local(fileobj, path, chunk_size)
        out = self.fs.open(path, "wb")
        try:
            n = _copy(fileobj, out, chunk_size)
        except BaseException:
            _discard(out)
            raise
        out.close()
        return n

    def _put_local(self, fileobj: IO[bytes], path: str, chunk_size: int) -> int:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}{_PARTIAL}{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as out:
                n = _copy(fileobj, out, chunk_size)
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
        return n

    def put_bytes(self, data: bytes, key: str) -> int:
        return self.put_stream(io.BytesIO(data), key)

    def copy_prefix(self, src: str, dst: str) -> int:
        """Copy every file under ``src`` to the same path under ``dst``, streamed; returns the bytes."""
        total = 0
        for e in self.list(src):
            with self.open(f"{src}/{e.path}") as f:
                total += self.put_stream(f, f"{dst}/{e.path}")
        return total

    def delete_prefix(self, prefix: str) -> None:
        """Remove everything under ``prefix`` (a key or a folder); absent is fine."""
        path = self.path(prefix)
        if path == self.root:
            raise ModelyardError(ErrorCode.INVALID, "refusing to delete the whole store", field="prefix")
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def delete_keys(self, keys: list[str]) -> None:
        """Remove these keys (files); absent ones are fine. One call for them all (one request per
        1,000 keys on S3)."""
        paths = [self.path(k) for k in keys]
        if any(p == self.root for p in paths):
            raise ModelyardError(ErrorCode.INVALID, "refusing to delete the whole store", field="keys")
        for i in range(0, len(paths), 1000):
            try:
                self.fs.rm(paths[i:i + 1000])
            except FileNotFoundError:
                for p in paths[i:i + 1000]:
                    if self.fs.exists(p):
                        self.fs.rm(p)

    # -- reading ---------------------------------------------------------------

    def open(self, key: str) -> IO[bytes]:
        """A streaming, readable binary file; raises NOT_FOUND when absent."""
        path = self.path(key)
        try:
            return self.fs.open(path, "rb")
        except FileNotFoundError:
            raise ModelyardError(ErrorCode.NOT_FOUND, f"artifact {key} not found") from None

    def get_file(self, key: str, local: str | os.PathLike[str]) -> int:
        """Download ``key`` to the local path ``local`` (replaced atomically); returns its size."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + _PARTIAL + uuid.uuid4().hex)
        try:
            with self.open(key) as src, open(tmp, "wb") as out:
                n = _copy(src, out, CHUNK)
            os.replace(tmp, local)
        except BaseException:
            _unlink(tmp)
            raise
        return n

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def is_file(self, key: str) -> bool:
        return bool(self.fs.isfile(self.path(key)))

    def size(self, key: str) -> int:
        try:
            return int(self.fs.size(self.path(key)))
        except FileNotFoundError:
            raise ModelyardError(ErrorCode.NOT_FOUND, f"artifact {key} not found") from None

    def list(self, prefix: str = "") -> list[Entry]:
        """Every file under ``prefix``, recursively, sorted by path."""
        base = self.path(prefix)
        if not self.fs.isdir(base):
            return []
        entries = []
        for name, info in self.fs.find(base, detail=True).items():
            rel = name[len(base):].lstrip("/") if name.startswith(base) else name
            if _PARTIAL in rel:
                continue
            entries.append(Entry(rel, int(info.get("size") or 0), _mtime(info)))
        return sorted(entries)

    # -- folders ---------------------------------------------------------------

    def sync_dir(self, local_dir: str | os.PathLike[str], prefix: str, state: dict[str, Fingerprint]) -> SyncResult:
        """Upload the files of ``local_dir`` that changed since the last sync with this ``state``.

        ``state`` maps relative paths to the (size, mtime_ns) last uploaded and is
        updated in place, so the caller keeps it between syncs. Deleted local files
        are left in the store: a job's earlier checkpoints stay downloadable.
        A symlink is never followed out of ``local_dir``: one to a file inside it is
        synced as that file, any other is skipped and named in ``skipped_links``.
        """
        base = prefix.strip("/")
        result = SyncResult()
        changed = [c for c in _walk_files(Path(local_dir), result.skipped_links) if state.get(c.rel) != c.fp]
        if changed and not self.is_local:
            try:
                # one call, so s3fs uploads the changed files concurrently
                self.fs.put([c[1] for c in changed], [self.path(f"{base}/{c[0]}") for c in changed])
            except FileNotFoundError:
                pass  # a file vanished mid-sync: fall back to one by one below
            else:
                return _record(changed, state, result)
        for item in changed:
            try:
                with _open_checked(item) as f:
                    self.put_stream(f, f"{base}/{item.rel}")
            except FileNotFoundError:
                continue  # deleted (or swapped) between the walk and the upload; the next sync settles it
            _record([item], state, result)
        return result

    def download_prefix(self, prefix: str, local_dir: str | os.PathLike[str]) -> int:
        """Download every file under ``prefix`` into ``local_dir``; returns the file count."""
        entries = self.list(prefix)
        dest = Path(local_dir)
        dest.mkdir(parents=True, exist_ok=True)
        if not entries:
            return 0
        rpaths = [f"{self.path(prefix)}/{e.path}" for e in entries]
        lpaths = [str(dest / e.path) for e in entries]
        for lp in lpaths:
            os.makedirs(os.path.dirname(lp), exist_ok=True)
        # fsspec fetches the list concurrently on async backends (s3fs).
        self.fs.get(rpaths, lpaths)
        return len(entries)


def _record(done: list[_Changed], state: dict[str, Fingerprint], result: SyncResult) -> SyncResult:
    for rel, _full, fp, _ident in done:
        state[rel] = fp
        result.uploaded.append(rel)
        result.bytes += fp[0]
    return result


def _walk_files(root: Path, skipped: list[str]) -> Iterator[_Changed]:
    """The regular files under ``root``, links inside it resolved; links leading out go to ``skipped``."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):  # never descends into a linked folder
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            try:
                item = _inspect(full, rel, real_root, skipped)
            except FileNotFoundError:
                continue
            if item is not None:
                yield item


def _inspect(full: str, rel: str, real_root: str, skipped: list[str]) -> _Changed | None:
    st = os.lstat(full)
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(full)
        if os.path.commonpath([real_root, target]) != real_root:
            skipped.append(f"{rel} -> {os.readlink(full)}")
            return None
        st, full = os.stat(target), target
    if not stat.S_ISREG(st.st_mode):
        return None  # a folder (linked from inside: synced under its own name), a fifo, a socket
    return _Changed(rel, full, (st.st_size, st.st_mtime_ns), (st.st_dev, st.st_ino))


def _open_checked(item: _Changed) -> IO[bytes]:
    """``item``'s file, only if it is still the one the walk saw: a folder swapped for a link
    to elsewhere between the walk and the upload opens another file, which is refused."""
    f = open(item.full, "rb")
    st = os.fstat(f.fileno())
    if (st.st_dev, st.st_ino) != item.ident:
        f.close()
        raise FileNotFoundError(item.full)
    return f


def _copy(src: IO[bytes], dst: IO[bytes], chunk_size: int) -> int:
    n = 0
    while chunk := src.read(chunk_size):
        dst.write(chunk)
        n += len(chunk)
    return n


def _discard(f: Any) -> None:
    """Abandon a remote write so that nothing is published under its key."""
    try:
        if hasattr(f, "discard"):
            f.discard()
    finally:
        # closing normally would commit what was written so far
        f.closed = True


def _unlink(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _mtime(info: dict[str, Any]) -> float:
    m = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if m is None:
        return 0.0
    if hasattr(m, "timestamp"):
        return float(m.timestamp())
    return float(m)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def backend_options(url: str) -> dict[str, Any]:
    """fsspec options for ``url``: an S3-compatible endpoint from the environment."""
    if url.startswith(("s3://", "s3a://")):
        # Other processes write here too (each supervisor uploads its job's outputs),
        # so a cached listing goes stale unseen: s3fs answered exists/size/open from
        # the listing the job page took mid-run, and files written after it were 404.
        options: dict[str, Any] = {"use_listings_cache": False}
        # botocore reads AWS_ENDPOINT_URL itself; passing it too keys fsspec's
        # instance cache on the endpoint, so a changed endpoint gets a new client.
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        return options
    return {}
