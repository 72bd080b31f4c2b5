"""Downsampling a metric series for a chart of a given width (tsdownsample's MinMaxLTTB), and the
columns cache that makes a long series' chart cheap to redraw.

The first and last points are always kept, and so are the extremes that
largest-triangle-three-buckets picks, so a spike never vanishes from a chart.

A chart of a long run is drawn again and again (every refresh of a job page)
while its series only grows at the end. ``SeriesCache`` keeps recently charted
series as numpy columns and reads only the chunks past the last chunk id it
holds (a million-point series is ~20 chunk rows, read whole in tens of
milliseconds). This is sound because a series only grows: its chunks are never
updated or deleted, and one attempt's batches are stored one after another, so
chunk ids within a series are committed in order.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from tsdownsample import MinMaxLTTBDownsampler

from modelyard.db import reports
from modelyard.db import series as S
from modelyard.db.engine import Database

_DOWNSAMPLER = MinMaxLTTBDownsampler()
X_ROW = {"step": 1, "epoch": 2, "time": 3}


def downsample_index(cols: np.ndarray, max_points: int) -> np.ndarray | None:
    """Which points of a (4, n) series a chart of ``max_points`` keeps (None: all of them)."""
    n = cols.shape[1]
    if n <= max_points:
        return None
    order = np.arange(n, dtype=np.float64)
    step = cols[1]
    x = np.where(np.isnan(step), order, step)
    if np.any(np.diff(x) < 0):  # steps restarted (a restart, a second attempt): fall back to order
        x = order
    return _DOWNSAMPLER.downsample(x, np.ascontiguousarray(cols[0]), n_out=max_points)


def window(cols: np.ndarray, x: str, start: float | None, end: float | None) -> np.ndarray:
    """The points whose ``x`` (step, epoch or time) lies in ``[start, end]``; a point without that x is left out."""
    xs = cols[X_ROW[x]]
    keep = ~np.isnan(xs)
    if start is not None:
        keep &= xs >= start
    if end is not None:
        keep &= xs <= end
    return cols[:, keep]


@dataclass
class Columns:
    """One series as a (4, n) float64 array (value, step, epoch, t) and the last chunk id it holds."""

    last_id: int
    cols: np.ndarray

    def __len__(self) -> int:
        return int(self.cols.shape[1])

    def extended(self, last_id: int, more: np.ndarray) -> "Columns":
        if not more.shape[1]:
            return self
        return Columns(last_id, S.concat([self.cols, more]) if len(self) else more)

    def points(self, max_points: int | None = None) -> list[dict[str, Any]]:
        idx = downsample_index(self.cols, max_points) if max_points else None
        return S.as_points(self.cols, idx)

    def columns(self, max_points: int | None = None) -> dict[str, Any]:
        idx = downsample_index(self.cols, max_points) if max_points else None
        return S.as_columns(self.cols, idx)


_EMPTY = Columns(0, S.empty())


class SeriesCache:
    """The most recently charted series, up to ``max_points`` points in all (32 bytes a point)."""

    def __init__(self, max_points: int = 4_000_000) -> None:
        self.max_points = max_points
        self._series: OrderedDict[tuple[str, int, str], Columns] = OrderedDict()
        self._lock = threading.Lock()

    def columns(self, db: Database, job_id: int, name: str) -> Columns:
        key = (db.url, job_id, name)
        with self._lock:
            cols = self._series.get(key, _EMPTY)
        cols = cols.extended(*reports.read_series(db, job_id, name, after_id=cols.last_id))
        with self._lock:
            held = self._series.get(key)
            if held is None or held.last_id <= cols.last_id:  # a concurrent read may have gone further
                self._series[key] = cols
                self._series.move_to_end(key)
                self._evict()
        return cols

    def forget(self, db: Database, job_id: int) -> None:
        """Drop the job's series: its chunks were deleted (``rm``, retention), and a cached copy only grows."""
        with self._lock:
            for key in [k for k in self._series if k[0] == db.url and k[1] == job_id]:
                del self._series[key]

    def _evict(self) -> None:
        total = sum(len(c) for c in self._series.values())
        while total > self.max_points and self._series:
            _key, cols = self._series.popitem(last=False)
            total -= len(cols)


SERIES = SeriesCache()
