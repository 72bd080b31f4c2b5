"""Downsampling a metric series for a chart of a given width (tsdownsample's MinMaxLTTB).

The first and last points are always kept, and so are the extremes that
largest-triangle-three-buckets picks, so a spike never vanishes from a chart.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from tsdownsample import MinMaxLTTBDownsampler

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
