"""Which executor a server runs its supervisors with: ``MODELYARD_EXECUTOR`` (local | ray)."""
from __future__ import annotations

from modelyard.config import Settings
from modelyard.executors.base import Executor
from modelyard.executors.local import LocalExecutor


def executor_for(settings: Settings) -> Executor:
    if settings.executor == "ray":
        # imported only when chosen: ray is an extra, and importing it costs ~1 s
        from modelyard.executors.ray import RayExecutor

        return RayExecutor(settings)
    return LocalExecutor(capacity=settings.capacity, labels=settings.node_labels)
