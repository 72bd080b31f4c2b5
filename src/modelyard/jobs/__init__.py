"""The domain: job specs, resources, states and the metric protocol. Pure; no I/O.

Names are loaded on first use (PEP 562): the supervisor imports the metric
protocol from here on every job start, and must not pay for pydantic (``spec``).
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.jobs.metrics import MetricPoint, format_metric_line, parse_metric_line
    from modelyard.jobs.spec import JobSpec, Resources
    from modelyard.jobs.states import TRANSITIONS, JobState, TerminationReason

_HOMES = {
    "JobSpec": "spec", "Resources": "spec",
    "JobState": "states", "TRANSITIONS": "states", "TerminationReason": "states",
    "MetricPoint": "metrics", "parse_metric_line": "metrics", "format_metric_line": "metrics",
}

__all__ = [
    "JobSpec", "Resources", "JobState", "TRANSITIONS", "TerminationReason",
    "MetricPoint", "parse_metric_line", "format_metric_line",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'modelyard.jobs' has no attribute {name!r}")
    value = getattr(import_module(f"modelyard.jobs.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
