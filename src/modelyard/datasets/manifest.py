"""A version's manifest (``manifest.json``, the last object written for a version) and the
content hash that names the version.

The version is the first 12 hex digits of sha256 over the format and the sorted
``path sha256`` lines of every file: the same data, split and formatted the same
way, is the same version.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard.artifacts.keys import dataset_version_prefix
from modelyard.datasets.names import VERSION_LEN

MANIFEST = "manifest.json"
SCHEMA = 1
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the version, "/"-separated, starts with the split folder
    size: int
    sha256: str


@dataclass(frozen=True)
class SplitInfo:
    name: str
    ratio: float | None  # None: the source's own split (MNIST's train/test)
    count: int
    labels: dict[str, int] | None = None  # records per label, when there are labels (at most 1000 kinds)


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    created: str  # ISO 8601, UTC
    source: str
    source_kind: str
    format: str
    seed: int
    splits: list[SplitInfo]
    files: list[FileEntry]
    size: int
    description: str | None = None
    classes: list[str] | None = None
    details: dict[str, Any] = field(default_factory=dict)  # what the reader found (shapes, columns...)
    schema: int = SCHEMA

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def prefix(self) -> str:
        return version_prefix(self.name, self.version)

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.created)

    def split(self, name: str) -> SplitInfo:
        return next(s for s in self.splits if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        d = dict(d)
        d["splits"] = [SplitInfo(**s) for s in d["splits"]]
        d["files"] = [FileEntry(**f) for f in d["files"]]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        return cls.from_dict(json.loads(data))


def version_prefix(name: str, version: str) -> str:
    return dataset_version_prefix(name, version)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(root: Path) -> list[FileEntry]:
    """Every file under ``root`` with its size and sha256, sorted by path."""
    entries = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            entries.append(FileEntry(rel, full.stat().st_size, sha256_file(full)))
    return sorted(entries, key=lambda e: e.path)


def content_version(fmt: str, files: list[FileEntry], split_names: list[str]) -> str:
    h = hashlib.sha256(f"format {fmt}\n".encode())
    # empty splits have no files but are part of the layout
    for name in sorted(split_names):
        h.update(f"split {name}\n".encode())
    for f in sorted(files, key=lambda e: e.path):
        h.update(f"{f.path} {f.sha256}\n".encode())
    return h.hexdigest()[:VERSION_LEN]
