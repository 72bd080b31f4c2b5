"""Splits: parsing ``train=0.8,val=0.2`` and assigning each record to one split.

The assignment is a pure function of (labels in source order, ratios, seed), so
the same source and seed give the same records in each split. It is stratified:
records are grouped by label, each group is shuffled with its own draw from one
``numpy.random.Generator(seed)`` and spread evenly over [0, 1); the global order
by that position is then cut by the ratios. Each split therefore gets its exact
share of the total and, per label, its share within one record. Without labels
there is one group and this is a plain seeded shuffle.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from modelyard.datasets.records import Label, label_sort_key
from modelyard.errors import ErrorCode, ModelyardError

SPLIT_NAME_RE = re.compile(r"[a-z0-9_-]{1,40}")
_TOLERANCE = 1e-6


def _invalid(message: str) -> ModelyardError:
    return ModelyardError(ErrorCode.INVALID, message, field="split")


def parse_split(spec: str | Mapping[str, float] | None) -> dict[str, float] | None:
    """Ratios by split name, in the order given; None when no split was asked for."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    items = list(spec.items()) if isinstance(spec, Mapping) else [_parse_part(p) for p in spec.split(",")]
    ratios: dict[str, float] = {}
    for name, ratio in items:
        _check_part(name, ratio, ratios)
        ratios[name] = float(ratio)
    total = math.fsum(ratios.values())
    if abs(total - 1.0) > _TOLERANCE:
        raise _invalid(f"split ratios sum to {total:g}, not 1: {format_split(ratios)}")
    return ratios


def _parse_part(part: str) -> tuple[str, float]:
    name, sep, value = part.strip().partition("=")
    if not sep:
        raise _invalid(f"bad split part {part.strip()!r}: expected NAME=RATIO, e.g. train=0.8,val=0.2")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise _invalid(f"bad ratio {value.strip()!r} for split {name.strip()!r}: expected a number such as 0.8") from None


def _check_part(name: str, ratio: float, seen: Mapping[str, float]) -> None:
    if not SPLIT_NAME_RE.fullmatch(name):
        raise _invalid(f"bad split name {name!r}: use 1-40 of a-z, 0-9, '_' and '-'")
    if name in seen:
        raise _invalid(f"split {name!r} is given twice")
    if not math.isfinite(ratio) or not 0 < ratio <= 1:
        raise _invalid(f"ratio {ratio} of split {name!r} must be above 0 and at most 1")


def format_split(ratios: Mapping[str, float]) -> str:
    return ",".join(f"{name}={ratio:g}" for name, ratio in ratios.items())


def split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """``n`` shared by ``ratios`` with largest remainders, so the counts add up to ``n``."""
    exact = [n * r for r in ratios]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def assign(labels: Sequence[Label], ratios: Sequence[float], seed: int) -> np.ndarray:
    """The split index (into ``ratios``) of each record, stratified by label."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    position = np.empty(n, dtype=np.float64)
    for _label, members in _groups(labels):
        # a random phase keeps single-member groups from all landing in the same split
        phase = rng.random()
        order = rng.permutation(len(members))
        position[members[order]] = (np.arange(len(members)) + phase) / len(members)
    tiebreak = rng.random(n)
    ranked = np.lexsort((tiebreak, position))
    result = np.empty(n, dtype=np.int32)
    start = 0
    for index, count in enumerate(split_counts(n, ratios)):
        result[ranked[start:start + count]] = index
        start += count
    return result


def _groups(labels: Sequence[Label]) -> list[tuple[Label, np.ndarray]]:
    members: dict[Label, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    keys = sorted(members, key=label_sort_key)
    return [(k, np.asarray(members[k], dtype=np.int64)) for k in keys]
