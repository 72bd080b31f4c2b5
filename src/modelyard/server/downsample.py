"""Downsampling a metric series for a chart of a given width (tsdownsample's MinMaxLTTB), and the
columns cache that makes a long series' chart cheap to redraw.

The first and last points are always kept, and so are the extremes that
largest-triangle-three-buckets picks, so a spike never vanishes from a chart.

A chart of a long run is drawn again and again (every refresh of a job page)
while its series only grows at the end. ``SeriesCache`` keeps recently charted
series as numpy columns and reads only the points past the last id it holds:
a million-point series costs one full read (~1-2 s on our 2-core machines),
then a few milliseconds a redraw. This is sound because a series only grows:
its points are never updated or deleted, and one attempt's batches are stored
one after another, so ids within a series are committed in order.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from tsdownsample import MinMaxLTTBDownsampler

from modelyard.store import reports
from modelyard.store.db import Database

_DOWNSAMPLER = MinMaxLTTBDownsampler()


def downsample_series(points: list[dict[str, Any]], max_points: int) -> list[dict[str, Any]]:
    if len(points) <= max_points:
        return points
    x = np.fromiter((p["step"] if p["step"] is not None else i for i, p in enumerate(points)), dtype=np.float64,
                    count=len(points))
    if np.any(np.diff(x) < 0):  # steps restarted (a restart, a second attempt): fall back to order
        x = np.arange(len(points), dtype=np.float64)
    y = np.fromiter((p["value"] for p in points), dtype=np.float64, count=len(points))
    idx = _DOWNSAMPLER.downsample(x, y, n_out=max_points)
    return [points[i] for i in idx]


@dataclass
class Columns:
    """One series as columns; a missing step or epoch is NaN."""

    last_id: int
    value: np.ndarray
    step: np.ndarray
    epoch: np.ndarray
    t: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    def extended(self, rows: list[tuple[Any, ...]]) -> "Columns":
        if not rows:
            return self
        ids, value, step, epoch, t = zip(*rows)
        # float64 holds integer steps exactly up to 2**53; None becomes NaN
        return Columns(
            ids[-1],
            np.concatenate((self.value, np.array(value, dtype=np.float64))),
            np.concatenate((self.step, np.array(step, dtype=np.float64))),
            np.concatenate((self.epoch, np.array(epoch, dtype=np.float64))),
            np.concatenate((self.t, np.array(t, dtype=np.float64))),
        )

    def points(self, idx: np.ndarray | None = None) -> list[dict[str, Any]]:
        value, step, epoch, t = (c if idx is None else c[idx] for c in (self.value, self.step, self.epoch, self.t))
        return [{"value": v, "step": s, "epoch": e, "time": tt}
                for v, s, e, tt in zip(value.tolist(), _ints(step), _ints(epoch), t.tolist())]

    def downsampled(self, max_points: int) -> list[dict[str, Any]]:
        n = len(self)
        if n <= max_points:
            return self.points()
        order = np.arange(n, dtype=np.float64)
        x = np.where(np.isnan(self.step), order, self.step)
        if np.any(np.diff(x) < 0):  # steps restarted (a restart, a second attempt): fall back to order
            x = order
        return self.points(_DOWNSAMPLER.downsample(x, self.value, n_out=max_points))


def _ints(column: np.ndarray) -> list[int | None]:
    """An integer column back as Python ints, NaN as None; whole-column conversions where it allows."""
    missing = np.isnan(column)
    if not missing.any():
        return column.astype(np.int64).tolist()
    if missing.all():
        return [None] * len(column)
    return [None if m else int(x) for m, x in zip(missing.tolist(), column.tolist())]


_EMPTY = Columns(0, *(np.empty(0, dtype=np.float64) for _ in range(4)))


class SeriesCache:
    """The most recently charted series, up to ``max_points`` points in all (~32 bytes a point)."""

    def __init__(self, max_points: int = 2_000_000) -> None:
        self.max_points = max_points
        self._series: OrderedDict[tuple[str, int, str], Columns] = OrderedDict()
        self._lock = threading.Lock()

    def columns(self, db: Database, job_id: int, name: str) -> Columns:
        key = (db.url, job_id, name)
        with self._lock:
            cols = self._series.get(key, _EMPTY)
        cols = cols.extended(reports.read_series(db, job_id, name, after_id=cols.last_id))
        with self._lock:
            held = self._series.get(key)
            if held is None or held.last_id <= cols.last_id:  # a concurrent read may have gone further
                self._series[key] = cols
                self._series.move_to_end(key)
                self._evict()
        return cols

    def _evict(self) -> None:
        total = sum(len(c) for c in self._series.values())
        while total > self.max_points and self._series:
            _key, cols = self._series.popitem(last=False)
            total -= len(cols)


SERIES = SeriesCache()
