"""What every reader provides, and how a SOURCE string becomes a filesystem and a path.

A ``Source`` is read twice: ``index()`` is the cheap pass (keys, labels and the
source's own parts, e.g. MNIST's train/t10k) used to plan the splits; then
``records()`` streams the payloads in the same order. Nothing holds more than one
batch of payloads in memory.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import fsspec
from fsspec.core import url_to_fs

from modelyard.datasets.records import Label, PayloadKind, Record
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.artifacts.store import backend_options

HIDDEN_PREFIXES = (".", "__MACOSX")


class IndexEntry(NamedTuple):
    key: str
    label: Label
    part: str | None  # the source's own split ("train"/"test" for MNIST), else None


class Source(ABC):
    """A readable dataset source. ``kind`` names the reader; ``payload`` what its records carry."""

    kind: ClassVar[str]
    payload: ClassVar[PayloadKind]

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, url: str) -> None:
        self.fs = fs
        self.path = path
        self.url = url

    @abstractmethod
    def index(self) -> Iterator[IndexEntry]: ...

    @abstractmethod
    def records(self) -> Iterator[Record]: ...

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the source beyond its URL and kind."""
        return {}


def source_error(source: str, why: str, *, field: str = "source") -> ModelyardError:
    return ModelyardError(ErrorCode.INVALID, f"cannot read {source}: {why}", field=field)


def open_fs(source: str) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """(filesystem, path, canonical URL) of a local path or fsspec URL."""
    if "://" not in source:
        source = os.path.abspath(os.path.expanduser(source))
    try:
        fs, path = url_to_fs(source, **backend_options(source))
    except (ImportError, ValueError) as e:
        raise source_error(source, f"unsupported location ({e})") from None
    return fs, path.rstrip("/") or path, source


def is_hidden(rel: str) -> bool:
    return any(part.startswith(HIDDEN_PREFIXES) for part in rel.split("/"))


def list_files(fs: fsspec.AbstractFileSystem, root: str) -> list[tuple[str, int]]:
    """(relative path, size) of every visible file under ``root``, sorted by path."""
    fs.invalidate_cache(root)  # another process may have written there since fsspec cached a listing
    found = fs.find(root, detail=True)
    files = []
    for name, info in found.items():
        if info.get("type") == "directory":
            continue
        rel = name[len(root):].lstrip("/") if name.startswith(root) else name.rsplit("/", 1)[-1]
        if rel and not is_hidden(rel):
            files.append((rel, int(info.get("size") or 0)))
    return sorted(files)
