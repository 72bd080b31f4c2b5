"""The ``tfrecord`` format: per split ``<split>/<split>-NNNNN.tfrecord`` shards of
``tf.train.Example`` records, written by the ``tfrecord`` package (record framing
with masked CRC32C of the length and of the data, as TensorFlow's reader checks).

Features: ``key`` (bytes); ``label`` (int64: the value, or the class index for class
names; float for float labels) and ``label_name`` (bytes, class names only); then
by payload -- a file: ``data`` (its bytes), ``name`` (relative path); an array:
``data`` (raw C-order bytes), ``shape`` (int64 list), ``dtype`` (numpy dtype string,
e.g. ``<u1``, for ``tf.io.decode_raw``); a row: one feature per column (int64, float
or bytes), with ``key``/``label`` not written when a column already has that name.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.datasets.formats.base import SHARD_BYTES, SplitWriter
from modelyard.datasets.records import Blob, Record

Feature = tuple[Any, str]


class TfrecordWriter(SplitWriter):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # Imported here, not at the top: the tfrecord package imports PyTorch when it is
        # installed (seconds), and every user of modelyard.datasets would pay for it.
        from tfrecord.writer import TFRecordWriter

        self._open = TFRecordWriter
        self.shard = -1
        self.writer: Any = None
        self._next_shard()

    def _next_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.shard += 1
        self.writer = self._open(str(self.folder / f"{self.split}-{self.shard:05d}.tfrecord"))

    def write(self, record: Record) -> None:
        assert self.writer is not None
        if self.writer.file.tell() >= SHARD_BYTES:
            self._next_shard()
        self.writer.write(self.features(record))

    def features(self, record: Record) -> dict[str, Feature]:
        payload = record.payload
        if isinstance(payload, Blob):
            feats: dict[str, Feature] = {"data": (payload.read(), "byte"), "name": (payload.name.encode(), "byte")}
        elif isinstance(payload, np.ndarray):
            array = np.ascontiguousarray(payload)
            feats = {"data": (array.tobytes(), "byte"), "shape": (list(array.shape), "int"),
                     "dtype": (array.dtype.str.encode(), "byte")}
        else:
            feats = {name: f for name, value in payload.items() if (f := _column(value)) is not None}
        feats.setdefault("key", (record.key.encode(), "byte"))
        code = self.ctx.coder.code(record.label)
        if code is not None:
            feats.setdefault("label", (code, "float" if isinstance(code, float) else "int"))
        if isinstance(record.label, str):
            feats.setdefault("label_name", (record.label.encode(), "byte"))
        return feats

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _column(value: Any) -> Feature | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return (int(value), "int")
    if isinstance(value, int):
        return (value, "int")
    if isinstance(value, float):
        return (value, "float")
    if isinstance(value, bytes):
        return (value, "byte")
    return (str(value).encode(), "byte")
