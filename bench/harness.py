"""Timing, alternation and summaries.

A scenario measures one *sample* per side and repetition; the two sides run
alternately (ours, peer, ours, peer, ...) so slow drift in the machine's load
hits both alike. A sample is one number, or a list of numbers (per-job
latencies), which are pooled before the summary.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Sample = float | list[float]


def summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
        "p90": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))], "n": len(ordered),
    }


@dataclass
class Side:
    """One side of a scenario: a name (``modelyard``, ``mlflow log_batch``) and how to take a sample."""

    label: str
    measure: Callable[[], Sample]
    samples: list[float] = field(default_factory=list)
    note: str | None = None

    def take(self) -> None:
        sample = self.measure()
        self.samples.extend(sample if isinstance(sample, list) else [sample])


def alternate(sides: Sequence[Side], repeat: int) -> None:
    for _ in range(repeat):
        for side in sides:
            side.take()


def ratio(ours: dict[str, float] | None, peer: dict[str, float] | None, *, higher_is_better: bool) -> float | None:
    """How many times better modelyard is than the peer, from the medians (> 1: modelyard wins)."""
    if not ours or not peer or not ours["median"] or not peer["median"]:
        return None
    r = ours["median"] / peer["median"] if higher_is_better else peer["median"] / ours["median"]
    return round(r, 2)


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.005, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
