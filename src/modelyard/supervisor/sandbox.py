"""Enforcing a job's ``Sandbox`` (jobs/launch.py) on a bare process: cgroup, cores, death with the supervisor.

This module owns what the kernel is asked to do for one command: a cgroup of
its own (memory limit without swap, CPU quota) where the machine lets us make
one, the cores it is pinned to, and that it dies with its supervisor. The uid
itself is ``subprocess.Popen(user=, group=, extra_groups=[])``; everything the
child does here runs after that (see ``child_setup``).

Layouts: cgroup v1 (a ``memory`` and a ``cpu`` hierarchy; the job's groups are
``<the supervisor's own group>/modelyard/<name>`` in each) and cgroup v2 (one
unified group under the supervisor's, where the parent delegates the
controllers). Neither, or no permission: no cgroup, and the job's log says
what still holds.

Nomenclature: *cores* are the scheduler's indices (``Sandbox.cpuset``); the
*real* cores are this machine's, onto which indices map modulo the cores the
supervisor may use (MODELYARD_CAPACITY may declare more CPUs than there are).
"""
from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000
PR_SET_PDEATHSIG = 1


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


def real_cores(cpuset: Sequence[int]) -> list[int]:
    """The scheduler's core indices on this machine's cores, modulo the ones we may use."""
    allowed = sorted(os.sched_getaffinity(0))
    return sorted({allowed[i % len(allowed)] for i in cpuset})


def child_setup(procs_fds: Sequence[int], cores: Sequence[int]) -> Callable[[], None]:
    """The ``preexec_fn``: into the cgroup, onto the cores, and dead with the supervisor.

    CPython's child runs, in order (Modules/_posixsubprocess.c, child_exec, 3.11):
    chdir, setsid, setgroups, setregid, setreuid, then preexec_fn, then exec.
    So this runs as the job's uid: PR_SET_PDEATHSIG would be cleared by the uid
    change had it been set before; here it survives the exec. Writing "0" to
    cgroup.procs moves the writer itself, through an fd root opened. Everything is
    bound before the fork: the child of a threaded process calls no allocation-heavy code.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    fds, pinned = tuple(procs_fds), set(cores)
    write, setaffinity, getppid, kill = os.write, os.sched_setaffinity, os.getppid, os.kill

    def setup() -> None:
        for fd in fds:
            write(fd, b"0")
        if pinned:
            setaffinity(0, pinned)
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if getppid() != parent:  # the supervisor died before the signal was armed
            kill(0, signal.SIGKILL)

    return setup


# The guard: a root process outside the job's group and cgroup, holding the read
# end of a pipe whose only write end is the supervisor's. When the supervisor
# ends -- SIGKILL included -- the read sees EOF, and the guard kills the job's
# process group and whatever is left in its cgroups (PDEATHSIG reaches only the
# command itself, not what it started).
_GUARD = """\
import os, signal, sys, time
if os.fork():  # not the supervisor's child: a kill of its process tree must not take the guard too
    os._exit(0)
while os.read(0, 1):
    pass
try:
    os.killpg(int(sys.argv[1]), signal.SIGKILL)
except OSError:
    pass
for d in sys.argv[2:]:
    for _ in range(500):
        try:
            for pid in open(d + "/cgroup.procs").read().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            os.rmdir(d)
            break
        except FileNotFoundError:
            break
        except OSError:
            time.sleep(0.01)
"""


class Guard:
    """Kills the job's group when the supervisor ends, however it ends (see ``_GUARD``)."""

    def __init__(self, pgid: int, cgroup_dirs: Sequence[Path]) -> None:
        read, self._write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _GUARD, str(pgid), *map(str, cgroup_dirs)],
                stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True, cwd="/", env={},
            )
        finally:
            os.close(read)

    def release(self) -> None:
        """The supervisor is done with the job: the guard sweeps up (what is left) and exits."""
        if self._write >= 0:
            os.close(self._write)
            self._write = -1
        self.proc.wait()  # the first process, which forked the guard and exited long ago


def format_limit(n: int) -> str:
    """``2G``, ``100M``, ``1.5G``: the way a person wrote the limit."""
    for unit, size in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= size:
            return f"{n / size:.2f}".rstrip("0").rstrip(".") + unit
    return f"{n}B"


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """``root`` and everything in it belong to the job's uid (links themselves, never their targets)."""
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, gid)
