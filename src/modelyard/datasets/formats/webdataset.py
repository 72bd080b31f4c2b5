"""The ``webdataset`` format: per split ``<split>/<split>-NNNNNN.tar`` shards written by
webdataset's ``ShardWriter`` (fixed mtimes, so the same data makes the same bytes).

A sample's ``__key__`` is the record key with dots in its last part turned into
``_`` (webdataset splits a member name at the first dot). Members: a file as
``<key>.<its extension>`` (``bin`` when it has none); an array as ``<key>.npy``; a row
as ``<key>.json``; the label as ``<key>.cls`` (the int, or the class index for class
names; read with ``decode()``), plus ``<key>.class.txt`` (class name) or
``<key>.label.json`` (float labels).
"""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from modelyard.datasets.formats.base import SHARD_BYTES, SplitWriter
from modelyard.datasets.formats.encoding import row_json
from modelyard.datasets.records import Blob, Record


class WebdatasetWriter(SplitWriter):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # Imported here, not at the top: webdataset imports PyTorch when it is installed
        # (seconds), and every user of modelyard.datasets would pay for it.
        import webdataset as wds

        pattern = str(self.folder / f"{self.split}-%06d.tar")
        self.writer = wds.ShardWriter(pattern, maxcount=10**9, maxsize=SHARD_BYTES, verbose=0,
                                      encoder=False, mtime=0)

    def write(self, record: Record) -> None:
        self.writer.write(self.sample(record))

    def sample(self, record: Record) -> dict[str, Any]:
        head, _, last = record.key.rpartition("/")
        key = f"{head}/{last.replace('.', '_')}" if head else last.replace(".", "_")
        sample: dict[str, Any] = {"__key__": key}
        payload = record.payload
        if isinstance(payload, Blob):
            sample[payload.suffix or "bin"] = payload.read()
        elif isinstance(payload, np.ndarray):
            buf = io.BytesIO()
            np.save(buf, payload, allow_pickle=False)
            sample["npy"] = buf.getvalue()
        else:
            sample["json"] = row_json(payload)
        code = self.ctx.coder.code(record.label)
        if isinstance(code, int):
            sample["cls"] = str(code).encode()
        elif code is not None:
            sample["label.json"] = json.dumps(code).encode()
        if isinstance(record.label, str):
            sample["class.txt"] = record.label.encode()
        return sample

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.close()
