"""Code snapshots from a browser: a folder's files, or a ``.zip`` / ``.tar.gz`` archive, made into the
same canonical snapshot (``artifacts/snapshot.py``) the CLI would have uploaded for that folder.

What arrives is hostile input. This module decides what of it becomes the job's code: paths must stay
inside the folder (no absolute path, no ``..``, no link of any kind in an archive), the folder's
``.gitignore`` files decide what is left out, exactly as ``collect_files`` does on a disk, and the
snapshot limits (``MODELYARD_MAX_SNAPSHOT``, ``MODELYARD_MAX_SNAPSHOT_FILES``) bound what it unpacks
to, checked while the bytes arrive, so an upload or a zip bomb costs at most the limit's worth of disk.

Words: a *staging* folder is this upload's own temporary folder under ``MODELYARD_HOME/code-uploads``; its
``tree`` holds the files as the job will see them, and is what gets snapshotted.
"""
from __future__ import annotations

import hashlib
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from zlib import error as zlib_error

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from modelyard.artifacts.keys import snapshot_key
from modelyard.artifacts.snapshot import IgnoreRules, SnapshotLimits, extract_snapshot, make_snapshot
from modelyard.artifacts.store import ArtifactStore
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.units import format_size

FIELD = "code"  # the new-job form's field: upload errors show beside it
MAX_GITIGNORE = 1024 * 1024
MAX_PATH = 4096
CHUNK = 1 << 20


def refuse(message: str, code: ErrorCode = ErrorCode.INVALID) -> ModelyardError:
    return ModelyardError(code, message, field=FIELD)


def safe_path(name: str) -> str:
    """``name`` as a relative "/"-separated path inside the folder; refuses one that would leave it."""
    path = name.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    parts = path.split("/")
    if (not path or path.startswith("/") or len(path) > MAX_PATH or "\0" in path or ":" in parts[0]
            or any(p in ("", ".", "..") for p in parts)):
        raise refuse(f"{name!r} is not a path inside the folder (absolute, '..', or empty parts are refused)")
    return path


@dataclass
class Stored:
    key: str
    size: int  # compressed
    files: int
    bytes: int  # unpacked


class Staging:
    """One upload's temporary folder; removed with everything in it on ``close``."""

    def __init__(self, uploads: Path) -> None:
        uploads.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="code-", dir=uploads))
        self.tree = self.root / "tree"
        self.tree.mkdir()

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class FolderWriter:
    """Writes a folder's files into ``tree`` one at a time as they arrive, leaving out what the
    ``.gitignore`` files already received exclude and refusing to grow past ``limits``."""

    def __init__(self, tree: Path, limits: SnapshotLimits) -> None:
        self.tree, self.limits = tree, limits
        self.rules = IgnoreRules()
        self.files = self.bytes = 0
        self._out: IO[bytes] | None = None
        self._gitignore: tuple[str, bytearray] | None = None

    def begin(self, name: str) -> None:
        path = safe_path(name)
        if self.rules.ignored(path):
            return  # its bytes are read and dropped
        self.files += 1
        self.limits.check(self.files, self.bytes)
        if path == ".gitignore" or path.endswith("/.gitignore"):
            self._gitignore = (path.rpartition("/")[0], bytearray())
        target = self.tree / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._out = open(target, "xb")
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise refuse(f"{path!r} comes twice, or as both a file and a folder") from None

    def write(self, data: bytes) -> None:
        if self._out is None:
            return
        self.bytes += len(data)
        self.limits.check(self.files, self.bytes)
        if self._gitignore is not None:
            if len(self._gitignore[1]) + len(data) > MAX_GITIGNORE:
                raise refuse(f"{self._gitignore[0] or 'the'} .gitignore is over {format_size(MAX_GITIGNORE)}")
            self._gitignore[1].extend(data)
        self._out.write(data)

    def end(self) -> None:
        if self._out is not None:
            self._out.close()
        if self._gitignore is not None:
            folder, text = self._gitignore
            self.rules.add(folder, text.decode("utf-8", "replace"))
        self._out, self._gitignore = None, None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


class ArchiveWriter:
    """Writes an uploaded archive's bytes to one file, refusing it past the compressed limit."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes, self.size = path, max_bytes, 0
        self._out = open(path, "wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise refuse(f"the archive is over the limit of {format_size(self.max_bytes)} (MODELYARD_MAX_SNAPSHOT)",
                         ErrorCode.TOO_LARGE)
        self._out.write(data)

    def close(self) -> None:
        self._out.close()


def unpack_archive(archive: Path, tree: Path, limits: SnapshotLimits) -> Path:
    """Unpack a .zip or .tar.gz (told apart by their first bytes) into ``tree``; returns the folder
    that is the code: ``tree``, or the one folder an archive of ``project/`` holds."""
    with open(archive, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic[:2] == b"\x1f\x8b":
            extract_snapshot(f, tree, limits, links=False)
        elif magic in (b"PK\x03\x04", b"PK\x05\x06"):
            _unzip(f, tree, limits)
        else:
            raise refuse("not a .zip or .tar.gz archive")
    entries = list(tree.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return tree


def _unzip(f: IO[bytes], tree: Path, limits: SnapshotLimits) -> None:
    count = total = 0
    try:
        with zipfile.ZipFile(f) as zf:
            for info in zf.infolist():
                path = safe_path(info.filename.rstrip("/"))
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise refuse(f"the archive holds a link, {path!r}; links are refused in an uploaded archive")
                if info.flag_bits & 0x1:
                    raise refuse(f"{path!r} is encrypted; upload an archive without a password")
                count += 1
                limits.check(count, total + info.file_size)  # what it says it unpacks to, before a byte
                target = tree / path
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                total = _copy_member(zf, info, target, count, total, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib_error, NotImplementedError) as e:
        raise refuse(f"not a readable .zip archive: {e}") from None
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
        raise refuse(f"the archive's paths clash: {e.filename}") from None


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, count: int, total: int,
                 limits: SnapshotLimits) -> int:
    # counted as it inflates, not as the header says: a forged header must not get past the limit
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, open(target, "wb") as out:
        while block := src.read(CHUNK):
            total += len(block)
            limits.check(count, total)
            out.write(block)
    return total


def store_snapshot(storage: ArtifactStore, folder: Path, staging: Staging, limits: SnapshotLimits) -> Stored:
    """Snapshot ``folder`` as the CLI does (.gitignore, limits) and store it under its hash."""
    path = staging.root / "snapshot.tar.gz"
    try:
        with open(path, "wb") as out:
            info = make_snapshot(folder, out, limits.max_bytes, max_files=limits.max_files)
    except ModelyardError as e:
        e.field = e.field or FIELD
        raise
    if info.files == 0:
        raise refuse("no files to run: the folder is empty, or .gitignore leaves nothing")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    key = snapshot_key(digest.hexdigest())
    if not storage.exists(key):
        storage.put_file(str(path), key)
    return Stored(key=key, size=info.compressed_bytes, files=info.files, bytes=info.bytes)


class CodeUpload:
    """One ``multipart/form-data`` upload, fed as it streams in: parts named ``file`` (a folder's
    files, each part's filename its path in the folder, ``.gitignore`` files first so the files they
    exclude are dropped on arrival) or one part named ``archive`` (a .zip or .tar.gz)."""

    def __init__(self, content_type: str | None, uploads: Path, limits: SnapshotLimits) -> None:
        kind, options = parse_options_header(content_type or "")
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise refuse("send the code as multipart/form-data: parts named 'file' or one named 'archive'")
        self.limits = limits
        self.staging = Staging(uploads)
        self.folder = FolderWriter(self.staging.tree, limits)
        self.archive: ArchiveWriter | None = None
        self.parts = 0
        self._sink: FolderWriter | ArchiveWriter | None = None
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data,
            "on_part_end": self._part_end})

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as e:
            raise refuse(f"not a readable multipart upload: {e}") from None

    def finish(self, storage: ArtifactStore) -> Stored:
        """The snapshot of what arrived, stored; call ``close`` after, whatever happened."""
        try:
            self._parser.finalize()
        except MultipartParseError as e:
            raise refuse(f"not a readable multipart upload: {e}") from None
        self.folder.close()
        if self.archive is not None:
            self.archive.close()
            tree = unpack_archive(self.archive.path, self.staging.tree, self.limits)
        elif self.parts:
            tree = self.staging.tree
        else:
            raise refuse("no code in the upload: send a folder's files or an archive")
        return store_snapshot(storage, tree, self.staging, self.limits)

    def close(self) -> None:
        self.folder.close()
        if self.archive is not None:
            self.archive.close()
        self.staging.close()

    # -- the parser's callbacks --------------------------------------------------------------

    def _part_begin(self) -> None:
        self._headers, self._sink = {}, None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None or name not in ("file", "archive"):
            raise refuse(f"unexpected part {name!r}: send parts named 'file' (with a filename) or 'archive'")
        self.parts += 1
        if self.parts > 10 * self.limits.max_files:  # dropped (ignored) files still cost a part each
            raise refuse(f"more than {10 * self.limits.max_files} parts", ErrorCode.TOO_LARGE)
        if name == "archive":
            if self.archive is not None or self.parts > 1:
                raise refuse("send one archive, or a folder's files, not both")
            self.archive = ArchiveWriter(self.staging.root / "archive", self.limits.max_bytes)
            self._sink = self.archive
        else:
            if self.archive is not None:
                raise refuse("send one archive, or a folder's files, not both")
            self.folder.begin(_form_filename(filename))
            self._sink = self.folder

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._sink is not None:
            self._sink.write(data[start:end])

    def _part_end(self) -> None:
        if self._sink is self.folder:
            self.folder.end()
        self._sink = None


def _form_filename(raw: bytes) -> str:
    # browsers send a filename's '"', CR and LF as %22, %0D, %0A (HTML's multipart/form-data encoding)
    name = raw.decode("utf-8", "replace")
    return name.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
