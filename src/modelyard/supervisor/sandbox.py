"""Enforcing a job's ``Sandbox`` (jobs/launch.py) on a bare process: cgroup, cores, death with the supervisor.

This module owns what the kernel is asked to do for one command: a cgroup of
its own (memory limit without swap, CPU quota) where the machine lets us make
one (supervisor/cgroup.py), the cores it is pinned to, and that it dies with
its supervisor. The uid itself is ``subprocess.Popen(user=, group=,
extra_groups=[])``; everything the child does here runs after that (see
``child_setup``).

Nomenclature: *cores* are the scheduler's indices (``Sandbox.cpuset``); the
*real* cores are this machine's, onto which indices map modulo the cores the
supervisor may use (MODELYARD_CAPACITY may declare more CPUs than there are).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1


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


def read_only_files(root: Path) -> None:
    """Every file under ``root`` read-only: outputs a job resumes from are for reading, and a
    checkpoint opened for writing there by mistake fails rather than be changed unseen. The
    folders stay writable, so the run folder can still be removed."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o444)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """``root`` and everything in it belong to the job's uid (links themselves, never their targets)."""
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, gid)
