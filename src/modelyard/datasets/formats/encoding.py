"""One record as one self-describing byte string (the values of the ``lmdb`` format).

    value   = b"MYR1" | header length (uint32, little-endian) | header | payload
    header  = UTF-8 JSON: {"key": str, "kind": "file" | "array" | "row",
                           "label": int | float | str | null,
                           "label_index": int        (only when labels are class names),
                           "name": str               (file: its relative path),
                           "dtype": str, "shape": [int]  (array: numpy dtype string, e.g. "<u1")}
    payload = file: the file's bytes | array: the raw C-order array data | row: UTF-8 JSON object

A job decodes it without modelyard: ``n = int.from_bytes(v[4:8], "little");
header = json.loads(v[8:8+n]); payload = v[8+n:]``, and for an array
``np.frombuffer(payload, header["dtype"]).reshape(header["shape"])``.
"""
from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from modelyard.datasets.records import Blob, LabelCoder, Record

MAGIC = b"MYR1"


def encode(record: Record, coder: LabelCoder) -> bytes:
    header: dict[str, Any] = {"key": record.key, "label": record.label}
    if coder.classes is not None and isinstance(record.label, str):
        header["label_index"] = coder.code(record.label)
    payload = record.payload
    if isinstance(payload, Blob):
        header.update(kind="file", name=payload.name)
        body = payload.read()
    elif isinstance(payload, np.ndarray):
        array = np.ascontiguousarray(payload)
        header.update(kind="array", dtype=array.dtype.str, shape=list(array.shape))
        body = array.tobytes()
    else:
        header["kind"] = "row"
        body = row_json(payload)
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + body


def decode(value: bytes) -> tuple[dict[str, Any], Any]:
    """(header, payload): bytes for a file, an ndarray for an array, a dict for a row."""
    if value[:4] != MAGIC:
        raise ValueError("not a modelyard record (bad magic)")
    (n,) = struct.unpack("<I", value[4:8])
    header = json.loads(value[8:8 + n])
    body = value[8 + n:]
    if header["kind"] == "array":
        return header, np.frombuffer(body, dtype=header["dtype"]).reshape(header["shape"])
    if header["kind"] == "row":
        return header, json.loads(body)
    return header, bytes(body)


def row_json(row: dict[str, Any]) -> bytes:
    # dates, decimals and the like become strings rather than failing the whole import
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=str).encode()
