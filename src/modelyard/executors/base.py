"""The executor interface: how a placed attempt becomes a running supervisor.

An executor starts a supervisor for an attempt (``start``), asks it to stop
(``cancel``), answers whether it still runs (``alive``: True, False, or None when
it cannot tell), and says what the machines it runs on hold (``capacity``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelyard.jobs.launch import LaunchSpec
from modelyard.store.records import Attempt


@dataclass(frozen=True)
class Launch:
    """Everything a supervisor needs (the LaunchSpec of docs/protocol.md), and where it runs."""

    spec: LaunchSpec

    @property
    def run_dir(self) -> Path:
        return self.spec.run_dir


class Executor(Protocol):
    name: str

    def start(self, launch: Launch) -> str:
        """Start the supervisor; returns a handle (stored with the attempt) to find it again."""
        ...

    def cancel(self, attempt: Attempt) -> None: ...

    def alive(self, attempt: Attempt) -> bool | None: ...
