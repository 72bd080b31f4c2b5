"""``.npz`` archives: a data array (``x``, ``images``, ... or ``data_key``) and an optional
label array (``y``, ``labels``, ... or ``label_column``) with one row per example.

Arrays are streamed out of the zip member a few MB at a time (``np.load`` would
read a whole member, as it cannot memory-map inside an archive), so a large
archive, local or remote, never has to fit in memory.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec
import numpy as np
from numpy.lib import format as npformat

from modelyard.datasets.bounds import Limits, check_array
from modelyard.datasets.readers.base import IndexEntry, Source, source_error
from modelyard.datasets.records import Record, normalise_label

DATA_KEYS = ("x", "images", "X", "data", "features", "inputs")
LABEL_KEYS = ("y", "labels", "Y", "label", "targets", "target")
_BATCH_BYTES = 4 * 1024 * 1024


class NpzSource(Source):
    kind = "npz"
    payload = "array"

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, url: str, *,
                 data_key: str | None = None, label_key: str | None = None, limits: Limits | None = None) -> None:
        super().__init__(fs, path, url)
        with self._zip() as zf:
            headers = {n[:-4]: _header(zf, n, url) for n in zf.namelist() if n.endswith(".npy")}
        self.data_key = _pick(url, headers, data_key, DATA_KEYS, "data_key", required=True)
        self.label_key = _pick(url, headers, label_key, LABEL_KEYS, "label_column", required=False)
        for key in filter(None, (self.data_key, self.label_key)):  # before a byte of either is read
            shape, dtype, fortran = headers[key]
            check_array(f"{url}: array {key!r}", shape, dtype.itemsize, limits or Limits(),
                        whole=fortran and len(shape) > 1)  # see _rows: such an array is read whole
        self.shape, self.dtype, _fortran = headers[self.data_key]
        self.count = self.shape[0] if self.shape else 0
        if not self.shape:
            raise source_error(url, f"array {self.data_key!r} is a scalar; expected one row per example", field="data_key")
        if self.label_key is not None:
            label_shape = headers[self.label_key][0]
            if label_shape[:1] != self.shape[:1] or len(label_shape) != 1:
                raise source_error(url, f"array {self.data_key!r} has {self.count} rows but labels "
                                   f"{self.label_key!r} have shape {label_shape}; expected ({self.count},)")

    @contextmanager
    def _zip(self) -> Iterator[zipfile.ZipFile]:
        with self.fs.open(self.path, "rb") as raw:
            try:
                with zipfile.ZipFile(raw) as zf:
                    yield zf
            except zipfile.BadZipFile as e:
                raise source_error(self.url, f"not an .npz archive ({e})") from None

    def _keys(self) -> Iterator[str]:
        width = len(str(self.count))
        return (f"{i:0{width}d}" for i in range(self.count))

    def index(self) -> Iterator[IndexEntry]:
        labels = self._rows(self.label_key) if self.label_key else iter(lambda: None, 0)
        for key, label in zip(self._keys(), labels):
            yield IndexEntry(key, normalise_label(label), None)

    def records(self) -> Iterator[Record]:
        labels = self._rows(self.label_key) if self.label_key else iter(lambda: None, 0)
        for key, x, y in zip(self._keys(), self._rows(self.data_key), labels):
            yield Record(key, normalise_label(y), x)

    def _rows(self, name: str) -> Iterator[np.ndarray]:
        with self._zip() as zf, zf.open(f"{name}.npy") as f:
            shape, fortran, dtype = _read_header(f)
            if fortran and len(shape) > 1:
                # rows of a Fortran-ordered array are not contiguous: this one is read whole
                yield from np.asfortranarray(np.frombuffer(f.read(), dtype=dtype).reshape(shape, order="F"))
                return
            yield from _stream_rows(f, shape, dtype)

    def describe(self) -> dict[str, Any]:
        return {"data_key": self.data_key, "label_key": self.label_key,
                "shape": list(self.shape), "dtype": self.dtype.str}


def _stream_rows(f: IO[bytes], shape: tuple[int, ...], dtype: np.dtype) -> Iterator[np.ndarray]:
    row_shape = shape[1:]
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    per_batch = max(1, _BATCH_BYTES // max(row_bytes, 1))
    done = 0
    while done < shape[0]:
        take = min(per_batch, shape[0] - done)
        data = f.read(take * row_bytes)
        if len(data) != take * row_bytes:
            raise ValueError(f"array data truncated after {done} rows")
        yield from np.frombuffer(data, dtype=dtype).reshape((take, *row_shape))
        done += take


def _read_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npformat.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = npformat.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = npformat.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    return tuple(shape), bool(fortran), np.dtype(dtype)


def _header(zf: zipfile.ZipFile, member: str, url: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    with zf.open(member) as f:
        try:
            shape, fortran, dtype = _read_header(f)
        except ValueError as e:
            raise source_error(url, f"{member} is not a .npy array ({e})") from None
    if dtype.hasobject:
        raise source_error(url, f"array {member[:-4]!r} holds Python objects; only plain numeric or string arrays can be read safely")
    return shape, dtype, fortran


def _pick(url: str, headers: dict[str, Any], chosen: str | None, defaults: tuple[str, ...], option: str, *, required: bool) -> str | None:
    if chosen is not None:
        if chosen not in headers:
            raise source_error(url, f"no array {chosen!r}; the archive holds {sorted(headers)}", field=option)
        return chosen
    for name in defaults:
        if name in headers:
            return name
    if required:
        raise source_error(url, f"no data array named {' or '.join(defaults[:3])}; it holds {sorted(headers)} "
                           f"(choose one with {option})", field=option)
    return None
