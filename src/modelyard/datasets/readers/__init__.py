"""Readers: which kind of source a SOURCE is, and opening it as a ``Source``.

Detection, for a file: ``.npz`` -> npz, ``.csv``/``.csv.gz`` -> csv, ``.parquet``/``.pq``
-> parquet, anything else -> a folder of that one file. For a folder: IDX files
(``*-images-idx3-ubyte``...) -> idx; only Parquet or only CSV files -> that table;
a single ``.npz`` -> npz; every file inside a class subfolder with an image
extension -> images; anything else -> a plain folder. ``kind=`` overrides it.
"""
from __future__ import annotations

from fsspec import AbstractFileSystem

from modelyard.datasets.bounds import Limits

from modelyard.datasets.readers.base import IndexEntry, Source, list_files, open_fs, source_error
from modelyard.datasets.readers.folders import FolderSource, ImageFolderSource, looks_like_image_folder
from modelyard.datasets.readers.idx import IdxSource, is_idx_name
from modelyard.datasets.readers.npz import NpzSource
from modelyard.datasets.readers.tables import CsvSource, ParquetSource

SOURCE_KINDS = ("folder", "images", "idx", "npz", "csv", "parquet")
_TABLE_SUFFIXES = {"csv": (".csv", ".csv.gz"), "parquet": (".parquet", ".pq")}

__all__ = ["SOURCE_KINDS", "IndexEntry", "Source", "open_source"]


def open_source(source: str, *, kind: str | None = None, label_column: str | None = None,
                data_key: str | None = None, limits: Limits | None = None) -> Source:
    """Open ``source`` (a local path or fsspec URL) with the reader its contents call for;
    an array source whose headers declare more than ``limits`` is refused before it is read."""
    limits = limits or Limits()
    if kind is not None and kind not in SOURCE_KINDS:
        raise source_error(source, f"unknown source kind {kind!r}; the kinds are {', '.join(SOURCE_KINDS)}", field="kind")
    fs, path, url = open_fs(source)
    try:
        exists, is_file = fs.exists(path), fs.isfile(path)
    except OSError as e:
        raise source_error(url, str(e)) from None
    if not exists:
        raise source_error(url, "no such file or folder")
    if is_file:
        kind = kind or _file_kind(path)
        if kind in ("csv", "parquet"):
            return _table(kind, fs, path, url, [path], label_column)
        if kind == "npz":
            return NpzSource(fs, path, url, data_key=data_key, label_key=label_column, limits=limits)
        if kind != "folder":
            raise source_error(url, f"a {kind} source is a folder, not a single file", field="kind")
        return FolderSource(fs, path, url)
    return _open_folder(fs, path, url, kind, label_column, data_key, limits)


def _open_folder(fs: AbstractFileSystem, path: str, url: str, kind: str | None, label_column: str | None,
                 data_key: str | None, limits: Limits) -> Source:
    files = list_files(fs, path)
    if not files:
        raise source_error(url, "the folder holds no files")
    kind = kind or _folder_kind(files)
    if kind == "idx":
        return IdxSource(fs, path, url, files, limits=limits)
    if kind in ("csv", "parquet"):
        return _table(kind, fs, path, url, [f"{path}/{rel}" for rel, _ in files], label_column)
    if kind == "npz":
        npz = [rel for rel, _ in files if rel.endswith(".npz")]
        if len(npz) != 1:
            raise source_error(url, f"an npz source is one .npz file; the folder holds {len(npz)}")
        return NpzSource(fs, f"{path}/{npz[0]}", url, data_key=data_key, label_key=label_column, limits=limits)
    if kind == "images":
        if not looks_like_image_folder(files):
            raise source_error(url, "an image folder holds only images, each inside a class subfolder", field="kind")
        return ImageFolderSource(fs, path, url, files)
    return FolderSource(fs, path, url, files)


def _file_kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".npz"):
        return "npz"
    for kind, suffixes in _TABLE_SUFFIXES.items():
        if name.endswith(suffixes):
            return kind
    return "folder"


def _folder_kind(files: list[tuple[str, int]]) -> str:
    rels = [rel.lower() for rel, _ in files]
    if any(is_idx_name(rel) for rel in rels):
        return "idx"
    for kind, suffixes in _TABLE_SUFFIXES.items():
        if all(rel.endswith(suffixes) for rel in rels):
            return kind
    if len(rels) == 1 and rels[0].endswith(".npz"):
        return "npz"
    return "images" if looks_like_image_folder(files) else "folder"


def _table(kind: str, fs: AbstractFileSystem, path: str, url: str, files: list[str], label_column: str | None) -> Source:
    cls = CsvSource if kind == "csv" else ParquetSource
    return cls(fs, path, url, files, label_column=label_column)
