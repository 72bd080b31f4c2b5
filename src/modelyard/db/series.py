"""Metric points as columns, and the chunk blobs they are stored in.

A chunk's ``points`` blob is four float64 little-endian columns one after the
other: value, step, epoch, t, each ``n`` long; a missing step or epoch is NaN.
float64 holds integer steps exactly up to 2**53.

Report batches carry points as ``series`` (per name, the same four columns,
base64: what the supervisor sends; ``unpack_series``) or as rows
``[name, value, step, epoch, t]`` (``group_rows``). Either way a batch becomes
one ``Chunk`` per series, every value checked on the way: the whole batch is
refused if one point is malformed, and nothing is stored.
"""
from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

_F8 = np.dtype("<f8")
MAX_NAME = 200


@dataclass(frozen=True)
class Chunk:
    name: str
    cols: np.ndarray  # shape (4, n): value, step, epoch, t
    raw: bytes | None = None  # the blob as it arrived, when it arrived as one (a packed series)

    @property
    def n(self) -> int:
        return int(self.cols.shape[1])

    def blob(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return np.ascontiguousarray(self.cols, dtype=_F8).tobytes()

    def last(self) -> tuple[float, int | None, int | None, float]:
        value, step, epoch, t = self.cols[:, -1].tolist()
        return value, _int_or_none(step), _int_or_none(epoch), t


def _int_or_none(x: float) -> int | None:
    return None if math.isnan(x) else int(x)


def decode(blob: bytes, n: int) -> np.ndarray:
    """A chunk's blob back as a (4, n) float64 array (read-only: a view of the bytes)."""
    cols = np.frombuffer(blob, dtype=_F8)
    if cols.size != 4 * n:
        raise ValueError(f"a metric chunk of {n} points holds {cols.size} numbers")
    return cols.reshape(4, n)


def group_rows(rows: list[Any]) -> list[Chunk]:
    """One report batch's metric rows as one chunk per series, in first-seen order.

    Raises ValueError or TypeError naming what is wrong with the first bad row.
    """
    by_name: dict[str, list[Any]] = {}
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) != 5:
            raise ValueError(f"a metric point is [name, value, step, epoch, t], not {row!r:.80}")
        name = row[0]
        series = by_name.get(name)
        if series is None:
            if not isinstance(name, str) or not name or len(name) > MAX_NAME:
                raise ValueError(f"a metric name is a string of 1 to {MAX_NAME} characters, not {name!r:.80}")
            series = by_name[name] = []
        series.append(row)
    chunks = []
    for name, series in by_name.items():
        # one conversion of the whole series: None (no step or epoch) becomes NaN;
        # a string or a nested list makes numpy raise, which refuses the batch
        cols = np.array([r[1:] for r in series], dtype=_F8).T
        if np.isnan(cols[0]).any() or np.isnan(cols[3]).any():
            raise ValueError(f"metric {name!r}: a point without a numeric value or time")
        _check(name, cols)
        chunks.append(Chunk(name, cols))
    return chunks


def unpack_series(series: Any) -> list[Chunk]:
    """A report's ``series`` (docs/protocol.md: per name, ``n`` and the base64 of its four
    float64 little-endian columns) as chunks, checked as ``group_rows`` checks rows."""
    if not isinstance(series, dict):
        raise ValueError("series is an object of metric name -> {n, points}")
    chunks = []
    for name, block in series.items():
        if not name or len(name) > MAX_NAME:
            raise ValueError(f"a metric name is a string of 1 to {MAX_NAME} characters, not {name!r:.80}")
        if not isinstance(block, dict) or not isinstance(block.get("n"), int) or block["n"] < 1 \
                or not isinstance(block.get("points"), str):
            raise ValueError(f"metric {name!r}: a series is {{\"n\": count, \"points\": base64}}")
        try:
            raw = base64.b64decode(block["points"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"metric {name!r}: points are not base64 ({exc})") from None
        cols = decode(raw, block["n"])
        _check(name, cols)
        chunks.append(Chunk(name, cols, raw))  # stored as it came: already the blob's layout
    return chunks


def _check(name: str, cols: np.ndarray) -> None:
    value, step, epoch, t = cols
    if not (np.isfinite(value).all() and np.isfinite(t).all()):
        raise ValueError(f"metric {name!r}: a point without a finite value or time")
    for col in (step, epoch):
        present = col[~np.isnan(col)]
        if not (np.isfinite(present) & (present == np.floor(present))).all():
            raise ValueError(f"metric {name!r}: step and epoch are integers")


def empty() -> np.ndarray:
    return np.empty((4, 0), dtype=_F8)


def concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts, axis=1) if parts else empty()


def ints(column: np.ndarray) -> list[int | None]:
    """An integer column back as Python ints, NaN as None; whole-column conversions where it allows."""
    missing = np.isnan(column)
    if not missing.any():
        return column.astype(np.int64).tolist()
    if missing.all():
        return [None] * len(column)
    return [None if m else int(x) for m, x in zip(missing.tolist(), column.tolist())]


def as_points(cols: np.ndarray, idx: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Columns as the API's points: ``[{"value", "step", "epoch", "time"}, ...]``."""
    value, step, epoch, t = cols if idx is None else cols[:, idx]
    return [{"value": v, "step": s, "epoch": e, "time": tt}
            for v, s, e, tt in zip(value.tolist(), ints(step), ints(epoch), t.tolist())]


def as_columns(cols: np.ndarray, idx: np.ndarray | None = None) -> dict[str, Any]:
    """Columns as the API's columnar layout: ``{"step": [...], "epoch": [...], "time": [...], "value": [...]}``.

    value and time stay numpy arrays (orjson writes them with OPT_SERIALIZE_NUMPY);
    step and epoch are integers, or lists with None where a point has none.
    """
    value, step, epoch, t = cols if idx is None else cols[:, idx]
    return {"step": _int_column(step), "epoch": _int_column(epoch), "time": np.ascontiguousarray(t),
            "value": np.ascontiguousarray(value)}


def _int_column(column: np.ndarray) -> np.ndarray | list[int | None]:
    if not np.isnan(column).any():
        return column.astype(np.int64)
    return ints(column)
