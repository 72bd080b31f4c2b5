"""MNIST's IDX files: ``train-images-idx3-ubyte`` with ``train-labels-idx1-ubyte`` (and
``t10k-*``, Fashion-MNIST alike), gzipped or not.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the data, big-endian, row
after row. Each images file needs its labels file with the same count. The file
prefix is the source's own part: ``train`` stays ``train``, ``t10k`` becomes ``test``.
"""
from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import fsspec
import numpy as np

from modelyard.datasets.bounds import Limits, check_array
from modelyard.datasets.readers.base import IndexEntry, Source, list_files, source_error
from modelyard.datasets.records import Record

IDX_NAME_RE = re.compile(r"(?:(?P<part>[^/]*?)[-_.])?(?P<what>images|labels)[-_.]idx(?P<ndim>\d)-ubyte(?P<gz>\.gz)?")
# type code -> numpy dtype (big-endian, as IDX stores it)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
IDX_CODES: dict[str, int] = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_DTYPES.items()}
_BATCH_BYTES = 4 * 1024 * 1024
_PART_NAMES = {"t10k": "test"}


@dataclass(frozen=True)
class IdxHeader:
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class IdxPair:
    part: str
    images: str  # relative paths
    labels: str


class IdxSource(Source):
    kind = "idx"
    payload = "array"

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, url: str, files: list[tuple[str, int]] | None = None,
                 *, limits: Limits | None = None) -> None:
        super().__init__(fs, path, url)
        self.limits = limits or Limits()
        self.pairs = pair_idx_files(url, [rel for rel, _ in (files if files is not None else list_files(fs, path))])
        self.headers = {p.part: self._check_pair(p) for p in self.pairs}

    def _check_pair(self, pair: IdxPair) -> tuple[IdxHeader, IdxHeader]:
        with self._open(pair.images) as f:
            images = read_header(f, f"{self.url}/{pair.images}")
        with self._open(pair.labels) as f:
            labels = read_header(f, f"{self.url}/{pair.labels}")
        for rel, header in ((pair.images, images), (pair.labels, labels)):  # before a row is read
            check_array(f"{self.url}/{rel}", header.shape, header.dtype.itemsize, self.limits)
        if len(labels.shape) != 1:
            raise source_error(self.url, f"{pair.labels} has {len(labels.shape)} dimensions; a labels file has 1")
        if images.shape[0] != labels.shape[0]:
            raise source_error(
                self.url,
                f"IDX counts disagree: {pair.images} holds {images.shape[0]} images "
                f"but {pair.labels} holds {labels.shape[0]} labels",
            )
        return images, labels

    @contextmanager
    def _open(self, rel: str) -> Iterator[IO[bytes]]:
        with self.fs.open(f"{self.path}/{rel}", "rb") as raw:
            if rel.endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    yield gz
            else:
                yield raw

    def index(self) -> Iterator[IndexEntry]:
        for pair in self.pairs:
            width = len(str(self.headers[pair.part][0].shape[0]))
            for i, label in enumerate(self._rows(pair.labels, self.headers[pair.part][1])):
                yield IndexEntry(f"{pair.part}-{i:0{width}d}", label.item(), pair.part)

    def records(self) -> Iterator[Record]:
        for pair in self.pairs:
            images, labels = self.headers[pair.part]
            width = len(str(images.shape[0]))
            rows = zip(self._rows(pair.images, images), self._rows(pair.labels, labels))
            for i, (x, y) in enumerate(rows):
                yield Record(f"{pair.part}-{i:0{width}d}", y.item(), x)

    def _rows(self, rel: str, header: IdxHeader) -> Iterator[np.ndarray]:
        """The rows of one IDX file in native byte order, read a few MB at a time."""
        n, row_bytes = header.shape[0], header.row_bytes
        per_batch = max(1, _BATCH_BYTES // max(row_bytes, 1))
        native = header.dtype.newbyteorder("=")
        with self._open(rel) as f:
            f.read(4 + 4 * len(header.shape))
            done = 0
            while done < n:
                take = min(per_batch, n - done)
                data = f.read(take * row_bytes)
                if len(data) != take * row_bytes:
                    raise source_error(self.url, f"{rel} is truncated: its header says {n} rows, it holds {done + len(data) // max(row_bytes, 1)}")
                batch = np.frombuffer(data, dtype=header.dtype).astype(native).reshape((take, *header.shape[1:]))
                yield from batch
                done += take

    def describe(self) -> dict[str, object]:
        return {p.part: {"images": p.images, "labels": p.labels, "count": self.headers[p.part][0].shape[0],
                         "shape": list(self.headers[p.part][0].shape[1:])} for p in self.pairs}


def read_header(f: IO[bytes], name: str) -> IdxHeader:
    head = f.read(4)
    if len(head) != 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_DTYPES or head[3] == 0:
        raise source_error(name, f"not an IDX file (magic number {head.hex() or 'missing'})")
    ndim = head[3]
    dims = f.read(4 * ndim)
    if len(dims) != 4 * ndim:
        raise source_error(name, "the IDX header is truncated")
    return IdxHeader(IDX_DTYPES[head[2]], struct.unpack(f">{ndim}I", dims))


def is_idx_name(rel: str) -> bool:
    return IDX_NAME_RE.fullmatch(rel.rsplit("/", 1)[-1]) is not None


def pair_idx_files(url: str, rels: list[str]) -> list[IdxPair]:
    found: dict[tuple[str, str], str] = {}
    for rel in sorted(rels, key=lambda r: r.endswith(".gz")):  # prefer uncompressed duplicates
        m = IDX_NAME_RE.fullmatch(rel.rsplit("/", 1)[-1])
        if m:
            part = re.sub(r"[^a-z0-9_-]", "-", (m.group("part") or "all").lower())
            found.setdefault((_PART_NAMES.get(part, part), m.group("what")), rel)
    parts = sorted({part for part, _ in found}, key=lambda p: (p != "train", p))  # train first, as people list them
    pairs = []
    for part in parts:
        images, labels = found.get((part, "images")), found.get((part, "labels"))
        if images is None or labels is None:
            have, missing = (images or labels), ("labels" if labels is None else "images")
            raise source_error(url, f"{have} has no matching {missing} file (expected e.g. train-{missing}-idx{1 if missing == 'labels' else 3}-ubyte)")
        pairs.append(IdxPair(part, images, labels))
    if not pairs:
        raise source_error(url, "no IDX files found")
    return pairs
