"""A job's cgroup: made with its limits before the fork, entered by the child, read for OOM kills, removed.

This module owns the cgroup layouts: v1 (a ``memory`` and a ``cpu`` hierarchy;
the job's groups are ``<the supervisor's own group>/modelyard/<name>`` in each)
and v2 (one unified group under the supervisor's, where the parent delegates
the controllers). Neither, or no permission: no cgroup, and ``make_cgroup``
says why, for the job's log.
"""
from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000


@dataclass
class JobCgroup:
    """The job's group(s): one per v1 hierarchy, or one v2 group."""

    dirs: list[Path]
    memory_dir: Path | None
    v2: bool
    procs_fds: list[int] = field(default_factory=list)  # opened by root before the fork

    def open_procs(self) -> None:
        # Opened here, as root: the child writes its own pid through them after setuid
        self.procs_fds = [os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for d in self.dirs]

    def close_procs(self) -> None:
        for fd in self.procs_fds:
            os.close(fd)
        self.procs_fds = []

    def oom_kills(self) -> int:
        """How many processes the kernel killed at the memory limit (0 without a memory group)."""
        if self.memory_dir is None:
            return 0
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            lines = (self.memory_dir / name).read_text().splitlines()
        except OSError:
            return 0
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        """SIGKILL whatever is left in the group (processes that left the job's group too), then rmdir."""
        self.close_procs()
        for d in self.dirs:
            remove_group(d)


def remove_group(d: Path, attempts: int = 200) -> None:
    for _ in range(attempts):
        try:
            pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
        except OSError:
            return  # already gone
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)  # the killed processes leave the group asynchronously


def make_cgroup(name: str, *, memory: int, cpus: float) -> tuple[JobCgroup | None, str | None]:
    """The job's cgroup with its limits set, or None and why not (for the job's log)."""
    if memory <= 0 and cpus <= 0:
        return None, None
    # never a name a previous attempt's guard may still be sweeping up (it does so asynchronously)
    name = f"{name}-{secrets.token_hex(4)}"
    try:
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            return _make_v2(name, memory=memory, cpus=cpus), None
        return _make_v1(name, memory=memory, cpus=cpus), None
    except (OSError, ValueError) as e:
        return None, f"{e.strerror if isinstance(e, OSError) and e.strerror else e}"


def own_group(controller: str) -> Path | None:
    """The supervisor's own group in ``controller``'s hierarchy ("" for v2's unified one)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path(path)
    return None


def _make_v1(name: str, *, memory: int, cpus: float) -> JobCgroup:
    dirs: list[Path] = []
    memory_dir = None
    try:
        if memory > 0:
            memory_dir = _v1_child("memory", name)
            dirs.append(memory_dir)
            (memory_dir / "memory.limit_in_bytes").write_text(str(memory))
            memsw = memory_dir / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # without it, past the limit the job swaps instead of ending
                memsw.write_text(str(memory))
        if cpus > 0:
            cpu_dir = _v1_child("cpu", name)
            dirs.append(cpu_dir)
            (cpu_dir / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (cpu_dir / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpus * CFS_PERIOD_US))))
    except OSError:
        for d in dirs:
            remove_group(d)
        raise
    group = JobCgroup(dirs, memory_dir, v2=False)
    group.open_procs()
    return group


def _v1_child(controller: str, name: str) -> Path:
    mount = CGROUP_ROOT / controller
    own = own_group(controller)
    if own is None or not (mount / "cgroup.procs").exists():
        raise ValueError(f"no cgroup v1 {controller} hierarchy at {mount}")
    d = mount / own.relative_to("/") / "modelyard" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def _make_v2(name: str, *, memory: int, cpus: float) -> JobCgroup:
    own = own_group("")
    if own is None:
        raise ValueError("no cgroup v2 group in /proc/self/cgroup")
    parent = CGROUP_ROOT / own.relative_to("/") / "modelyard"
    parent.mkdir(exist_ok=True)
    # the parent must hand the controllers down; it holds no process, so v2 allows it
    (parent / "cgroup.subtree_control").write_text("+memory +cpu")
    d = parent / name
    d.mkdir(exist_ok=True)
    try:
        if memory > 0:
            (d / "memory.max").write_text(str(memory))
            (d / "memory.swap.max").write_text("0")
        if cpus > 0:
            (d / "cpu.max").write_text(f"{max(1000, int(cpus * CFS_PERIOD_US))} {CFS_PERIOD_US}")
    except OSError:
        remove_group(d)
        raise
    group = JobCgroup([d], d if memory > 0 else None, v2=True)
    group.open_procs()
    return group
