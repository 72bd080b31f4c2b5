"""The executor interface: how a placed attempt becomes a running supervisor.

An executor starts a supervisor for an attempt (``start``), asks it to stop
(``cancel``), kills it and its command outright where it can reach them
(``kill``: before a lost attempt's retry is placed on the same GPUs), answers
whether it still runs (``alive``: True, False, or None when it cannot tell), and
says what the machines it runs on hold (``capacity``: the nodes as they are now). After a
server restart, ``recover`` says for each unfinished attempt of this executor whether
its supervisor is found again (reattach), never came up (requeue) or is gone (lost);
``close`` lets go of what the executor holds (a zygote, a cluster connection), never
of the supervisors, which outlive the server.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from enum import Enum
from typing import Protocol, runtime_checkable

from modelyard.executors.capacity import Capacity
from modelyard.jobs.launch import LaunchSpec
from modelyard.db.records import Attempt


@dataclass(frozen=True)
class Launch:
    """Everything a supervisor needs (the LaunchSpec of docs/protocol.md), and where it runs.

    ``spec`` is node rank 0's; a job on several nodes has one spec per node rank in
    ``ranks`` (rank 0's first), each naming its node, GPUs and cores, and the executor
    starts one supervisor for each."""

    spec: LaunchSpec
    ranks: tuple[LaunchSpec, ...] = ()

    @property
    def specs(self) -> tuple[LaunchSpec, ...]:
        return self.ranks or (self.spec,)

    @property
    def run_dir(self) -> Path:
        return self.spec.run_dir


class Executor(Protocol):
    name: str

    def start(self, launch: Launch) -> str:
        """Start the supervisor; returns a handle (stored with the attempt) to find it again."""
        ...

    def cancel(self, attempt: Attempt) -> None: ...

    def kill(self, attempt: Attempt) -> bool:
        """SIGKILL the supervisor and its command (container included), and wait until they are
        gone; False when they could not be reached (another machine, nothing recorded)."""
        ...

    def alive(self, attempt: Attempt) -> bool | None: ...

    def capacity(self) -> Capacity:
        """The nodes as they are now (cheap: the loop asks every pass)."""
        ...

    def recover(self, attempts: Sequence[Attempt]) -> list["Recovery"]:
        """After a restart: what became of each unfinished attempt this executor started."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ConsoleListener:
    """Where a console's JupyterLab answers, as its executor found it on its node."""

    host: str  # the node's address, from the cluster's own node table
    uids: frozenset[int]  # of every socket listening on the console's port there
    job_uid: int  # whom the job's command runs as there


@runtime_checkable
class ConsoleNodes(Protocol):
    """An executor whose consoles run on other machines (jobs/console.py): it says where one listens,
    and who holds its port there, asked of a trusted party on that node."""

    def console_listener(self, attempt: Attempt, port: int) -> ConsoleListener: ...


class Found(str, Enum):
    """What ``recover`` found of an attempt's supervisor."""

    REATTACH = "reattach"  # it runs and reports on: nothing to do
    REQUEUE = "requeue"  # it never started (no handle, or its supervisor never came up)
    LOST = "lost"  # it is gone: the attempt ends LOST (retried if the job has retries left)


@dataclass(frozen=True)
class Recovery:
    attempt: Attempt
    found: Found
    message: str = ""
