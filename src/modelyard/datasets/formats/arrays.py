"""Array formats: ``npz`` (per split ``<split>/<split>.npz`` holding ``x``, ``y`` and, for
class-name labels, ``classes``) and IDX (an IDX source kept as IDX per split).

Rows go straight into ``.npy`` files on disk (``open_memmap``) that are then packed
into the archive without compression, so memory use does not grow with the data.
Images are decoded with Pillow and table rows become a numeric feature vector
(every column but the label); ``y`` holds the class index for class names.
"""
from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap
from PIL import Image

from modelyard.datasets.formats.base import SplitWriter, format_error
from modelyard.datasets.readers.idx import IDX_CODES, IdxSource
from modelyard.datasets.records import Blob, Record

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times, so the same data packs to the same bytes


def to_array(record: Record, label_column: str | None) -> np.ndarray:
    payload = record.payload
    if isinstance(payload, np.ndarray):
        return payload
    if isinstance(payload, Blob):
        with Image.open(io.BytesIO(payload.read())) as img:
            return np.asarray(img)
    return _row_vector(record.key, payload, label_column)


def _row_vector(key: str, row: dict[str, Any], label_column: str | None) -> np.ndarray:
    values = [v for name, v in row.items() if name != label_column]
    for name, v in row.items():
        if name != label_column and not isinstance(v, (int, float)) and v is not None:
            raise format_error(f"npz needs numeric columns; column {name!r} of row {key} holds {v!r} "
                               "(use --format files, lmdb, tfrecord or webdataset)")
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


class NpzWriter(SplitWriter):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.done = 0
        self.label_column = getattr(self.ctx.source, "label_column", None)

    def _start(self, first: np.ndarray, label: object) -> None:
        self.x = open_memmap(self.folder / ".x.npy", mode="w+", dtype=first.dtype, shape=(self.count, *first.shape))
        if self.ctx.labelled:
            y_type = np.float64 if isinstance(self.ctx.coder.code(label), float) else np.int64  # type: ignore[arg-type]
            self.y = open_memmap(self.folder / ".y.npy", mode="w+", dtype=y_type, shape=(self.count,))

    def write(self, record: Record) -> None:
        row = to_array(record, self.label_column)
        if self.x is None:
            self._start(row, record.label)
        assert self.x is not None
        if row.shape != self.x.shape[1:]:
            raise format_error(f"npz needs examples of one shape: {record.key} is {row.shape}, "
                               f"earlier ones are {self.x.shape[1:]} (use --format files, lmdb, tfrecord or webdataset)")
        self.x[self.done] = row
        if self.y is not None:
            code = self.ctx.coder.code(record.label)
            self.y[self.done] = np.nan if code is None else code
        self.done += 1

    def close(self) -> None:
        members = {"x": self._flush(self.x, ".x.npy", np.float64)}
        if self.ctx.labelled:
            members["y"] = self._flush(self.y, ".y.npy", np.int64)
            if self.ctx.coder.classes is not None:
                members["classes"] = self.folder / ".classes.npy"
                np.save(members["classes"], np.asarray(self.ctx.coder.classes, dtype=str))
        self.abort()
        pack_npz(self.folder / f"{self.split}.npz", members)

    def _flush(self, array: np.ndarray | None, name: str, empty_dtype: type) -> Path:
        path = self.folder / name
        if array is None:  # an empty split
            np.save(path, np.empty((0,), dtype=empty_dtype))
        else:
            array.flush()
        return path

    def abort(self) -> None:
        self.x = self.y = None


def pack_npz(target: Path, members: dict[str, Path]) -> None:
    """Zip ``.npy`` files into ``target`` as ``np.savez`` would, streaming, then delete them."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, path in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, 4 * 1024 * 1024)
            os.unlink(path)


class IdxWriter(SplitWriter):
    """``<split>/images-idx<N>-ubyte`` and ``<split>/labels-idx1-ubyte``, uncompressed."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        source = self.ctx.source
        assert isinstance(source, IdxSource)
        self.label_dtype = next(iter(source.headers.values()))[1].dtype
        self.images: Any = None
        self.labels = open(self.folder / "labels-idx1-ubyte", "wb")
        self.labels.write(_idx_header(self.label_dtype, (self.count,)))

    def write(self, record: Record) -> None:
        x = record.payload
        assert isinstance(x, np.ndarray)
        if self.images is None:
            self.images = open(self.folder / f"images-idx{x.ndim + 1}-ubyte", "wb")
            self.images.write(_idx_header(x.dtype, (self.count, *x.shape)))
        self.images.write(x.astype(x.dtype.newbyteorder(">")).tobytes())
        self.labels.write(np.asarray([record.label], dtype=self.label_dtype).tobytes())

    def close(self) -> None:
        if self.images is None:  # an empty split still gets both files
            self.images = open(self.folder / "images-idx3-ubyte", "wb")
            self.images.write(_idx_header(np.dtype("u1"), (0, 0, 0)))
        self.abort()

    def abort(self) -> None:
        for f in (self.images, self.labels):
            if f is not None:
                f.close()


def _idx_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    code = IDX_CODES[dtype.str[1:]]
    return bytes([0, 0, code, len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape)
