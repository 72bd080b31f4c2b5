"""modelyard: a self-hosted training platform.

The SDK a training job may use is just :func:`log_metric`, which prints one
line of the metric protocol; a job needs no dependency on modelyard to report.

The SDK that submits and watches jobs (``submit``, ``job``, ``jobs``, ``connect``,
``Job``; modelyard/sdk.py) is loaded on first use (PEP 562), so that a job that
only logs metrics does not import the HTTP client.
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from modelyard.jobs.metrics import format_metric_line

if TYPE_CHECKING:
    from modelyard.sdk import Job, JobTimeout, connect, job, submit

__version__ = "0.1.0"

_SDK_NAMES = ("submit", "job", "connect", "Job", "JobTimeout")


def log_metric(name: str, value: float, step: int | None = None, epoch: int | None = None) -> None:
    """Print ``{"metric": name, "value": value, ...}`` on stdout, flushed, for the supervisor to record."""
    sys.stdout.write(format_metric_line(name, value, step, epoch) + "\n")
    sys.stdout.flush()


def __getattr__(name: str) -> Any:
    if name not in _SDK_NAMES:
        raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
    from modelyard import sdk

    return getattr(sdk, name)


class _JobsPackage(ModuleType):
    """``modelyard.jobs`` names the domain package (modelyard/jobs/) before any SDK name can: a
    subpackage is an attribute of its parent. Calling it is the SDK's job search, so that
    ``modelyard.jobs(tag="baseline")`` reads as the SDK promises while ``modelyard.jobs.spec`` stays."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from modelyard import sdk

        return sdk.jobs(*args, **kwargs)


sys.modules["modelyard.jobs"].__class__ = _JobsPackage

__all__ = ["log_metric", "__version__", *_SDK_NAMES, "jobs"]
