"""Code snapshots: a job's working folder as a .tar.gz, and its safe extraction.

This module decides what a snapshot holds: every file under the folder except
``.git/`` and what the folder's ``.gitignore`` files exclude (nested ones too,
each relative to its own folder, the deepest deciding, as git does), and
symlinks only when they point inside the folder. It checks the size limit by
walking, before a byte is written, and extracts with tarfile's ``data`` filter
so a snapshot cannot write outside its destination. ``SnapshotLimits`` bound
what a snapshot unpacks to (bytes and members), not only its compressed size:
``check_snapshot`` reads an uploaded one's headers without extracting it, and
``extract_snapshot`` checks every member again before writing it, so a small
archive that would unpack to gigabytes (a snapshot bomb) is refused both times.
"""
from __future__ import annotations

import os
import tarfile
from zlib import error as zlib_error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pathspec

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.units import format_size

Progress = Callable[[int, int], None]  # (bytes_done, bytes_total), uncompressed
_ALWAYS_EXCLUDED = frozenset({".git"})
_Specs = list[tuple[str, pathspec.GitIgnoreSpec]]  # (folder relative to the root, its .gitignore)


DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_FILES = 100_000


@dataclass(frozen=True)
class SnapshotLimits:
    max_bytes: int = DEFAULT_MAX_BYTES  # unpacked, regular files' sizes summed (MODELYARD_MAX_SNAPSHOT)
    max_files: int = DEFAULT_MAX_FILES  # members (MODELYARD_MAX_SNAPSHOT_FILES)

    def check(self, files: int, total: int) -> None:
        """Raise TOO_LARGE naming the limit and its variable once ``files`` or ``total`` is past it."""
        if total > self.max_bytes:
            raise ModelyardError(
                ErrorCode.TOO_LARGE, f"the snapshot unpacks to more than {format_size(self.max_bytes)} "
                f"({self.max_bytes} bytes), the limit set by MODELYARD_MAX_SNAPSHOT", field="snapshot")
        if files > self.max_files:
            raise ModelyardError(
                ErrorCode.TOO_LARGE, f"the snapshot holds more than {self.max_files} files, the limit set by "
                "MODELYARD_MAX_SNAPSHOT_FILES", field="snapshot")


@dataclass(frozen=True)
class SnapshotFile:
    path: str  # relative, "/"-separated
    full: str
    size: int  # 0 for a symlink
    is_link: bool = False


@dataclass
class SnapshotInfo:
    files: int = 0
    bytes: int = 0  # uncompressed total of regular files
    compressed_bytes: int = 0
    skipped_links: list[str] = field(default_factory=list)  # symlinks pointing outside the folder


def collect_files(workdir: str | os.PathLike[str]) -> tuple[list[SnapshotFile], list[str]]:
    """What a snapshot of ``workdir`` holds, sorted, and the symlinks it leaves out."""
    root = Path(workdir).resolve()
    if not root.is_dir():
        raise ModelyardError(ErrorCode.INVALID, f"{workdir} is not a folder", field="workdir")
    files: list[SnapshotFile] = []
    skipped: list[str] = []
    _walk(root, root, "", [], files, skipped)
    return files, skipped


def _walk(root: Path, folder: Path, rel: str, specs: _Specs, files: list[SnapshotFile], skipped: list[str]) -> None:
    specs = specs + _read_gitignore(folder, rel)
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        if entry.name in _ALWAYS_EXCLUDED:
            continue
        if entry.is_symlink():
            if not _ignored(path, False, specs):
                _add_link(root, entry, path, files, skipped)
        elif entry.is_dir():
            if not _ignored(path, True, specs):
                _walk(root, Path(entry.path), path, specs, files, skipped)
        elif entry.is_file() and not _ignored(path, False, specs):
            files.append(SnapshotFile(path, entry.path, entry.stat().st_size))


def _read_gitignore(folder: Path, rel: str) -> _Specs:
    try:
        lines = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return []
    return [(rel, pathspec.GitIgnoreSpec.from_lines(lines))]


class IgnoreRules:
    """The ``.gitignore`` rules of a folder that arrives file by file (a browser's upload), so each
    file can be judged as it comes, by the same rules ``collect_files`` applies to a folder on disk.
    Only the ``.gitignore`` files already added count: a sender gives them first."""

    def __init__(self) -> None:
        self._specs: dict[str, pathspec.GitIgnoreSpec] = {}

    def add(self, folder: str, text: str) -> None:
        """``text``: the ``.gitignore`` of ``folder`` (relative, "/"-separated, "" for the root)."""
        self._specs[folder] = pathspec.GitIgnoreSpec.from_lines(text.splitlines())

    def ignored(self, path: str) -> bool:
        """Whether the file ``path`` is left out: by its own name, or a folder above it is."""
        parts = path.split("/")
        if _ALWAYS_EXCLUDED.intersection(parts[:-1]) or parts[-1] in _ALWAYS_EXCLUDED:
            return True
        for depth in range(1, len(parts) + 1):
            sub, is_dir = "/".join(parts[:depth]), depth < len(parts)
            specs = [(base, spec) for base, spec in self._specs.items() if _above(base, sub)]
            if _ignored(sub, is_dir, sorted(specs, key=lambda s: s[0].count("/") + bool(s[0]))):
                return True
        return False


def _above(base: str, path: str) -> bool:
    return not base or path.startswith(base + "/")


def _ignored(path: str, is_dir: bool, specs: _Specs) -> bool:
    # The deepest .gitignore with a matching pattern decides, negations included.
    for base, spec in reversed(specs):
        sub = path[len(base) + 1:] if base else path
        result = spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            return bool(result.include)
    return False


def _add_link(root: Path, entry: os.DirEntry[str], path: str, files: list[SnapshotFile], skipped: list[str]) -> None:
    target = os.readlink(entry.path)
    resolved = Path(os.path.normpath(os.path.join(os.path.dirname(entry.path), target)))
    # Absolute or escaping links would be refused at extraction (data filter) and
    # would point at nothing on another machine anyway.
    if os.path.isabs(target) or not resolved.is_relative_to(root):
        skipped.append(path)
    else:
        files.append(SnapshotFile(path, entry.path, 0, is_link=True))


def check_size(workdir: str | os.PathLike[str], files: list[SnapshotFile], max_bytes: int) -> int:
    """The uncompressed total; raises TOO_LARGE naming the limit and the biggest files."""
    total = sum(f.size for f in files)
    if total > max_bytes:
        biggest = sorted(files, key=lambda f: f.size, reverse=True)[:5]
        names = ", ".join(f"{f.path} ({format_size(f.size)})" for f in biggest)
        raise ModelyardError(
            ErrorCode.TOO_LARGE,
            f"{workdir} is {format_size(total)} ({total} bytes), over the snapshot limit of "
            f"{format_size(max_bytes)} ({max_bytes} bytes); biggest files: {names}. "
            "Add what the job does not need to .gitignore, or raise MODELYARD_MAX_SNAPSHOT.",
        )
    return total


def make_snapshot(
    workdir: str | os.PathLike[str],
    dest_fileobj: IO[bytes],
    max_bytes: int,
    *,
    progress: Progress | None = None,
    max_files: int | None = None,
) -> SnapshotInfo:
    """Write a .tar.gz of ``workdir`` to ``dest_fileobj`` (streaming); nothing is written when too large
    (over ``max_bytes``, or over ``max_files`` files where given)."""
    files, skipped = collect_files(workdir)
    total = check_size(workdir, files, max_bytes)
    if max_files is not None:
        SnapshotLimits(max_bytes, max_files).check(len(files), total)
    counter = _CountingWriter(dest_fileobj)
    done = 0
    with tarfile.open(fileobj=counter, mode="w|gz") as tar:  # type: ignore[call-overload]
        for f in files:
            done = _add(tar, f, done, total, progress)
    if progress:
        progress(total, total)
    return SnapshotInfo(files=len(files), bytes=total, compressed_bytes=counter.count, skipped_links=skipped)


def _add(tar: tarfile.TarFile, f: SnapshotFile, done: int, total: int, progress: Progress | None) -> int:
    info = tar.gettarinfo(f.full, arcname=f.path)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if not info.isfile():
        tar.addfile(info)
        return done
    with open(f.full, "rb") as src:
        reader = _ProgressReader(src, done, total, progress)
        tar.addfile(info, reader)
    return done + info.size


def check_snapshot(fileobj: IO[bytes], limits: SnapshotLimits) -> SnapshotInfo:
    """Walk an uploaded snapshot's headers (nothing is extracted) and refuse one past ``limits``,
    stopping as soon as it is: a bomb costs at most the limit's worth of decompression."""
    info = SnapshotInfo()
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz") as tar:  # type: ignore[call-overload]
            for member in tar:
                info.files, info.bytes = info.files + 1, info.bytes + _unpacked_size(member)
                limits.check(info.files, info.bytes)
    except (tarfile.TarError, EOFError, zlib_error) as e:
        raise ModelyardError(ErrorCode.INVALID, f"not a readable .tar.gz snapshot: {e}", field="snapshot") from None
    return info


def _unpacked_size(member: tarfile.TarInfo) -> int:
    # a GNU sparse member's size is its full, unpacked size; links and folders write no data
    return member.size if member.isreg() else 0


def extract_snapshot(fileobj: IO[bytes], dest_dir: str | os.PathLike[str],
                     limits: SnapshotLimits | None = None, *, links: bool = True) -> int:
    """Unpack a snapshot into ``dest_dir``; returns the member count. Refuses paths leaving it,
    and, with ``limits``, a member that would take it past them (before writing that member);
    ``links=False``: refuses any symlink or hard link (an archive a browser uploaded)."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    count = total = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz") as tar:  # type: ignore[call-overload]
            for member in tar:
                count, total = count + 1, total + _unpacked_size(member)
                if limits is not None:
                    limits.check(count, total)
                if not links and (member.issym() or member.islnk()):
                    raise ModelyardError(ErrorCode.INVALID, f"the archive holds a link, {member.name!r}; "
                                         "links are refused in an uploaded archive", field="code")
                tar.extract(member, dest, filter="data")
    except tarfile.FilterError as e:
        raise ModelyardError(ErrorCode.INVALID, f"unsafe snapshot refused: {e}") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ModelyardError(ErrorCode.INVALID, f"unreadable snapshot: {e}") from None
    return count


class _CountingWriter:
    """Counts compressed bytes on their way to the destination."""

    def __init__(self, dest: IO[bytes]) -> None:
        self.dest = dest
        self.count = 0

    def write(self, data: bytes) -> int:
        self.dest.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.dest.flush()


class _ProgressReader:
    def __init__(self, src: IO[bytes], done: int, total: int, progress: Progress | None) -> None:
        self.src, self.done, self.total, self.progress = src, done, total, progress

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.done += len(data)
        if self.progress and data:
            self.progress(self.done, self.total)
        return data
