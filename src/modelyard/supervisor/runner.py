"""The job's process group: start it, wait for it, end it.

This module owns signals to the job. The command runs in its own session
(``start_new_session=True``), so its pid is also its process group id and every
process it starts, grandchildren included, is in that group unless it leaves on
purpose. Ending the job means SIGTERM to the whole group, ``grace`` seconds,
then SIGKILL to whatever of the group is left.

``start`` also puts the command in its sandbox (supervisor/sandbox.py): its
uid, its cgroup, its cores, and a guard that kills the group should the
supervisor die first.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

from modelyard.jobs.launch import Sandbox
from modelyard.supervisor.cgroup import JobCgroup, make_cgroup
from modelyard.supervisor.sandbox import Guard, child_setup, real_cores


class StartFailed(Exception):
    """The command could not be started; the message is for the user."""


class JobProcess:
    def __init__(self, proc: subprocess.Popen[bytes], cgroup: JobCgroup | None = None) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.cgroup = cgroup
        self.guard = Guard(proc.pid, cgroup.dirs if cgroup else ())
        self.started_at = time.monotonic()
        self.exited = threading.Event()
        # Reaping in a thread lets the supervisor race the exit against stop and timeout.
        threading.Thread(target=self._reap, name="modelyard-reaper", daemon=True).start()

    @classmethod
    def start(
        cls, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], sandbox: Sandbox | None = None,
        name: str = "job", note: Callable[[str], None] = lambda _m: None,
    ) -> "JobProcess":
        """Start ``argv`` in its own session and sandbox; ``name`` names its cgroup (unique on the machine)."""
        sandbox = sandbox or Sandbox()
        cgroup, why = make_cgroup(name, memory=sandbox.memory, cpus=sandbox.cpus)
        if why is not None:
            note(f"no cgroup for this job ({why}): {_unenforced(sandbox)}")
        run_as = sandbox.run_as
        ids: dict[str, object] = {} if run_as is None else {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
        try:
            proc = _popen(argv, cwd, env, sandbox, cgroup)
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            if cgroup is not None:
                cgroup.close_procs()  # the child has its copies; the group is entered or never will be
        return cls(proc, cgroup)

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the job at its memory limit."""
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    def release(self) -> None:
        """After the job ended: the guard sweeps up, the cgroup goes."""
        self.guard.release()
        if self.cgroup is not None:
            self.cgroup.remove()

    def _reap(self) -> None:
        self.proc.wait()
        self.exited.set()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.exited.is_set() else None

    def group_alive(self) -> bool:
        """Whether any process of the group still runs (zombies do not count)."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # kill(0) also succeeds for zombies, and orphans stay zombies for good
        # where PID 1 does not reap (containers): look at what is left.
        return any(_running_in_group(p, self.pid) for p in psutil.process_iter())

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def end_group(self, grace: float, *, on_kill: Callable[[], None] | None = None) -> None:
        """SIGTERM the whole group, wait up to ``grace`` seconds for it to empty, then SIGKILL."""
        if not self.group_alive():
            return
        self.signal_group(signal.SIGTERM)
        if self._wait_group_gone(grace):
            return
        if on_kill is not None:
            on_kill()
        self.signal_group(signal.SIGKILL)
        self._wait_group_gone(5.0)

    def _wait_group_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            # A zombie leader still counts in its group until reaped, which _reap does.
            if self.exited.is_set() and not self.group_alive():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def _running_in_group(p: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ProcessLookupError, PermissionError):
        return False


def exit_code(returncode: int) -> int:
    """A shell-style exit code: a death by signal N becomes 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the command was killed by {name}"
    return f"the command exited with code {returncode}"


def _popen(argv: Sequence[str], cwd: Path, env: Mapping[str, str], sandbox: Sandbox,
           cgroup: JobCgroup | None) -> subprocess.Popen[bytes]:
    run_as = sandbox.run_as
    ids: dict[str, object] = {} if run_as is None else {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
    try:
        return subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=child_setup(cgroup.procs_fds if cgroup else (), real_cores(sandbox.cpuset)),
            **ids,  # type: ignore[arg-type]
        )
    except FileNotFoundError:
        if not cwd.is_dir():
            raise StartFailed(f"working folder {cwd} does not exist") from None
        raise StartFailed(_not_found(argv[0], cwd)) from None
    except PermissionError:
        raise StartFailed(f"permission denied running {argv[0]!r} (is it executable, and readable by its uid?)") from None
    except OSError as e:
        raise StartFailed(f"could not start {argv[0]!r}: {e.strerror or e}") from None
    except subprocess.SubprocessError as e:  # preexec_fn failed: the sandbox could not be entered
        raise StartFailed(f"could not put {argv[0]!r} in its sandbox: {e}") from None


def _unenforced(sandbox: Sandbox) -> str:
    parts = []
    if sandbox.memory:
        # RLIMIT_AS would count address space, not memory: CUDA, JAX and many allocators
        # reserve far more than they touch, so it kills healthy jobs and misses none
        parts.append("the memory limit is not enforced")
    if sandbox.cpus:
        parts.append("the CPU quota is not enforced" + (" (the job is still pinned to its cores)"
                                                        if sandbox.cpuset else ""))
    return "; ".join(parts)


def _not_found(cmd: str, cwd: Path) -> str:
    if os.sep in cmd:
        return f"command not found: {cmd} (no such file, relative to {cwd})"
    return f"command not found: {cmd} (not on PATH)"
