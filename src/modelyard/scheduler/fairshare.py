"""Fair share: each user's recent usage, decayed, as the policy's tie-break within a priority. Pure.

Usage is counted in *GPU-hours*: an attempt charges ``nodes x gpus`` for every
hour it runs; one that asks for no GPU charges ``nodes x cpus x CPU_WEIGHT``
(eight CPU-hours count as one GPU-hour, about what a GPU node has per GPU), so
CPU-only users take turns with each other and with GPU users on one scale.
Past usage is forgotten with a half-life (``MODELYARD_FAIRSHARE_HALFLIFE``,
7 days by default, as Slurm's ``PriorityDecayHalfLife``): an hour used one
half-life ago counts half. The integral of ``rate x 2^-(now - t)/h`` over an
attempt's run is exact, so no bucketing is needed.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

CPU_WEIGHT = 1 / 8  # GPU-hours per CPU-hour of a job that asks for no GPU
FORGOTTEN_AFTER = 10  # half-lives: an attempt that ended longer ago counts < 0.1% and is not read


@dataclass(frozen=True, slots=True)
class Span:
    """One attempt's run as fair share sees it."""

    user: str
    gpus: int  # per node
    cpus: float  # per node
    nodes: int
    started: float
    ended: float | None  # None: still running


def rate(gpus: int, cpus: float, nodes: int) -> float:
    """GPU-hours charged per hour of running."""
    return nodes * (gpus if gpus else cpus * CPU_WEIGHT)


def decayed_hours(span: Span, now: float, halflife: float) -> float:
    """``span``'s GPU-hours up to ``now``, each weighted by ``2^-(age / halflife)``."""
    end = min(now if span.ended is None else span.ended, now)
    start = min(span.started, end)
    k = math.log(2) / halflife
    # integral over [start, end] of exp(-k (now - t)) dt, in hours
    weight = (math.exp(-k * (now - end)) - math.exp(-k * (now - start))) / k / 3600.0
    return rate(span.gpus, span.cpus, span.nodes) * weight


def usage(spans: Iterable[Span], now: float, halflife: float) -> dict[str, float]:
    """Per user, the decayed GPU-hours of their attempts."""
    out: dict[str, float] = {}
    for s in spans:
        out[s.user] = out.get(s.user, 0.0) + decayed_hours(s, now, halflife)
    return out
