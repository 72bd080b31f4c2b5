"""modelyard: a self-hosted training platform.

The SDK a training job may use is just :func:`log_metric`, which prints one
line of the metric protocol; a job needs no dependency on modelyard to report.
"""
from __future__ import annotations

import sys

from modelyard.jobs.metrics import format_metric_line

__version__ = "0.1.0"


def log_metric(name: str, value: float, step: int | None = None, epoch: int | None = None) -> None:
    """Print ``{"metric": name, "value": value, ...}`` on stdout, flushed, for the supervisor to record."""
    sys.stdout.write(format_metric_line(name, value, step, epoch) + "\n")
    sys.stdout.flush()


__all__ = ["log_metric", "__version__"]
