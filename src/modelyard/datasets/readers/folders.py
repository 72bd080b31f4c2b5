"""Folder sources: a plain folder of files (kept as is, no labels) and an image folder
whose first-level subfolders are the classes (``cats/001.png`` has label ``cats``).

Hidden files and folders (``.DS_Store``, ``.git``, ``__MACOSX``) are not part of a
dataset. A single file as the source is a folder of that one file.
"""
from __future__ import annotations

import io
from collections.abc import Iterator

import fsspec
from PIL import Image, UnidentifiedImageError

from modelyard.datasets.readers.base import IndexEntry, Source, list_files, source_error
from modelyard.datasets.records import Blob, Record

IMAGE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff", "ppm", "pgm", "pbm"})


class FolderSource(Source):
    kind = "folder"
    payload = "file"

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, url: str, files: list[tuple[str, int]] | None = None) -> None:
        super().__init__(fs, path, url)
        self.single = files is None and fs.isfile(path)
        if self.single:
            files = [(path.rsplit("/", 1)[-1], int(fs.size(path)))]
        self.files = files if files is not None else list_files(fs, path)
        if not self.files:
            raise source_error(url, "the folder holds no files")

    def _full(self, rel: str) -> str:
        return self.path if self.single else f"{self.path}/{rel}"

    def index(self) -> Iterator[IndexEntry]:
        for rel, _size in self.files:
            yield IndexEntry(rel, self.label_of(rel), None)

    def label_of(self, rel: str) -> str | None:
        return None

    def records(self) -> Iterator[Record]:
        for rel, size in self.files:
            full = self._full(rel)
            yield Record(rel, self.label_of(rel), Blob(rel, size, lambda full=full: self.fs.open(full, "rb")))

    def describe(self) -> dict[str, object]:
        return {"files": len(self.files)}


class ImageFolderSource(FolderSource):
    kind = "images"

    def label_of(self, rel: str) -> str:
        return rel.split("/", 1)[0]

    def records(self) -> Iterator[Record]:
        for record in super().records():
            assert isinstance(record.payload, Blob)
            data = record.payload.read()
            _verify_image(self.url, record.key, data)
            yield Record(record.key, record.label, Blob.from_bytes(record.key, data))

    def describe(self) -> dict[str, object]:
        return {"files": len(self.files), "classes": len({self.label_of(rel) for rel, _ in self.files})}


def looks_like_image_folder(files: list[tuple[str, int]]) -> bool:
    """Every file sits inside a first-level subfolder and has an image extension."""
    return bool(files) and all(
        "/" in rel and rel.rsplit(".", 1)[-1].lower() in IMAGE_SUFFIXES for rel, _ in files
    )


def _verify_image(url: str, key: str, data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise source_error(url, f"{key} is not a readable image ({e})") from None
