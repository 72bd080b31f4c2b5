"""The local executor: each attempt's supervisor is a process in its own session.

A supervisor outlives the server (its own session, not a child that dies with
it). It is forked by a pre-imported zygote (supervisor/zygote.py), which costs
a few ms where a fresh interpreter costs ~0.4 s of imports; if the zygote
cannot be started or does not answer, the supervisor is started as
``python -m modelyard.supervisor CONFIG`` as before, and the zygote is started
again on the next launch. After a restart the server finds a supervisor again
by the pid in the attempt's handle, checking the process's start time (or, for
handles written before there was one, the command line for the attempt's
config path) so that a reused pid is never mistaken for the job.

Either way the supervisor holds an exclusive ``flock`` on its CONFIG.json for
life: a launch whose zygote died mid-request falls back only if it can take
that claim itself, and otherwise adopts the forked supervisor from
``supervisor.pid`` — an attempt never runs twice.

``kill`` is for an attempt the server declared lost: SIGKILL to the supervisor
(found as above) and to its command's process group (``job.pid``, which the
supervisor writes with the leader's start time), waiting until both are gone,
before the scheduler ends the attempt and may place its retry.
"""
from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import psutil

from modelyard.executors.base import Found, Launch, Recovery
from modelyard.executors.capacity import Capacity, detect_capacity
from modelyard.jobs.launch import JOB_PID_FILE, LaunchSpec
from modelyard.db.records import Attempt

log = logging.getLogger("modelyard.executor")

# the server's own secrets and settings are not the job's business
_SERVER_ONLY = ("MODELYARD_DATABASE_URL", "MODELYARD_TOKEN", "MODELYARD_URL", "MODELYARD_WEBHOOKS", "MODELYARD_CAPACITY")

ZYGOTE_READY_TIMEOUT = 30.0  # its imports, once, on a machine that may be busy
ZYGOTE_REPLY_TIMEOUT = 5.0  # two forks
ADOPT_TIMEOUT = 5.0  # a zygote-forked supervisor's pid file, after a lost reply
PID_FILE = "supervisor.pid"  # written by the zygote's launching child: {"pid", "started"}
# /proc/stat's boot time is whole seconds of wall clock and can step by one
# under NTP; a pid reused within a second of the first process's start would
# need all 32768 pids to wrap in that second
START_TOLERANCE = 1.0
KILL_WAIT = 10.0  # for a SIGKILLed process tree to be gone


def supervisor_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_ONLY}
    # NVML (capacity, sampling) numbers GPUs in PCI bus order; CUDA must read
    # CUDA_VISIBLE_DEVICES in the same order, or a job gets another job's GPU
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


def _handle(pid: int, config_path: Path, started: float | None) -> str:
    """What an attempt stores to find its supervisor again (see ``LocalExecutor._process``)."""
    handle: dict[str, Any] = {"pid": pid, "config": str(config_path)}
    if started is not None:
        handle["started"] = started
    return orjson.dumps(handle).decode()


class ZygoteError(Exception):
    """The zygote did not answer with a supervisor (it may have started one all the same)."""


class Zygote:
    """The server's end of supervisor/zygote.py: one request line, one reply line, under a deadline.

    It runs in the server's session and ends when the server does (EOF on its
    stdin); the supervisors it forks have sessions of their own.
    """

    def __init__(self, runs_dir: Path) -> None:
        # runs_dir is only a marker on the command line: whose supervisors these are
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.supervisor", "--zygote", str(runs_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/", env=supervisor_env(), close_fds=True,
        )
        self._buf = b""
        self._ready = False
        assert self.proc.stdout is not None
        self._poll = select.poll()  # not select(): a busy server's fds go past FD_SETSIZE
        self._poll.register(self.proc.stdout.fileno(), select.POLLIN)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def launch(self, config: Path, run_dir: Path) -> dict[str, Any]:
        if not self._ready:
            self._read(ZYGOTE_READY_TIMEOUT)
            self._ready = True
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(orjson.dumps(
                {"config": str(config), "run_dir": str(run_dir), "pid_file": str(run_dir / PID_FILE)}) + b"\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise ZygoteError(f"the zygote is gone: {e}") from None
        reply = self._read(ZYGOTE_REPLY_TIMEOUT)
        if "error" in reply:
            raise ZygoteError(str(reply["error"]))
        return reply

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll.poll(left * 1000):
                raise ZygoteError(f"the zygote did not answer within {timeout:g}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ZygoteError(f"the zygote exited ({self.proc.poll()})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            reply = orjson.loads(line)
        except orjson.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict):
            raise ZygoteError(f"the zygote answered {line[:200]!r}")
        return reply

    def close(self, timeout: float = 2.0) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        """A zygote that failed once is not trusted with another launch (a late reply would answer it)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


class LocalExecutor:
    name = "local"

    def __init__(self, *, capacity: str | None = None, labels: str | None = None) -> None:
        """``capacity``, ``labels``: MODELYARD_CAPACITY and MODELYARD_NODE_LABELS (detect_capacity)."""
        # detected once: a machine's GPUs, cores and memory do not change under a running server
        self._capacity = detect_capacity(capacity, labels=labels)
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # the fallback's, to reap them
        self._lock = threading.Lock()
        self._zygote: Zygote | None = None
        self._zygote_lock = threading.Lock()

    def start(self, launch: Launch) -> str:
        launch.run_dir.mkdir(parents=True, exist_ok=True)
        config_path = launch.run_dir / "supervisor.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(launch.spec.model_dump_json().encode())
        handle = self._start_forked(config_path, launch.run_dir)
        return handle if handle is not None else self._start_process(config_path, launch.run_dir)

    def _start_forked(self, config_path: Path, run_dir: Path) -> str | None:
        """A supervisor forked by the zygote; None when the zygote did not start one (fall back)."""
        with self._zygote_lock:
            try:
                if self._zygote is None:
                    self._zygote = Zygote(run_dir.parent)
                reply = self._zygote.launch(config_path, run_dir)
                return _handle(int(reply["pid"]), config_path, float(reply["started"]))
            except (OSError, ZygoteError, KeyError, TypeError, ValueError) as e:
                log.warning("supervisor zygote failed (%s); starting the supervisor as a process", e)
                if self._zygote is not None:
                    self._zygote.kill()
                    self._zygote = None
                return None

    def _start_process(self, config_path: Path, run_dir: Path) -> str:
        """``python -m modelyard.supervisor CONFIG``, holding the attempt's claim (see the module doc)."""
        claim = os.open(config_path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._adopt(run_dir)  # the zygote forked it after all
            # the supervisor's log is root's alone on a shared server, as supervisor.json is
            log_fd = os.open(run_dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(log_fd, "ab") as out:
                # sys.executable, not "python": a pyenv shim costs ~80 ms per spawn
                proc = subprocess.Popen(
                    [sys.executable, "-m", "modelyard.supervisor", str(config_path)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, pass_fds=(claim,),
                    cwd=run_dir, env=supervisor_env(), start_new_session=True, close_fds=True,
                )
        finally:
            os.close(claim)  # the supervisor's inherited copy keeps the lock
        with self._lock:
            self._children[proc.pid] = proc
        try:
            started: float | None = psutil.Process(proc.pid).create_time()  # our child: not reaped yet
        except psutil.Error:
            started = None
        return _handle(proc.pid, config_path, started)

    def _adopt(self, run_dir: Path) -> str:
        path = run_dir / PID_FILE
        deadline = time.monotonic() + ADOPT_TIMEOUT
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"a supervisor claimed {run_dir} but wrote no {PID_FILE}")
            time.sleep(0.01)
        info = orjson.loads(path.read_bytes())
        return _handle(int(info["pid"]), run_dir / "supervisor.json", float(info["started"]))

    def capacity(self) -> Capacity:
        return self._capacity

    def recover(self, attempts: Sequence[Attempt]) -> list[Recovery]:
        """Each supervisor found again by the pid in its handle (checked against reuse, see ``_process``)."""
        found = []
        for attempt in attempts:
            if not attempt.handle:
                found.append(Recovery(attempt, Found.REQUEUE, "the server stopped before its supervisor was started"))
            elif self._process(attempt) is not None:
                found.append(Recovery(attempt, Found.REATTACH))
            else:
                found.append(Recovery(attempt, Found.LOST, "its supervisor process was gone when the server started"))
        return found

    def close(self) -> None:
        """End the zygote (the supervisors it forked go on)."""
        with self._zygote_lock:
            if self._zygote is not None:
                self._zygote.close()
                self._zygote = None

    def _process(self, attempt: Attempt) -> psutil.Process | None:
        if not attempt.handle:
            return None
        handle = orjson.loads(attempt.handle)
        pid = handle["pid"]
        with self._lock:
            child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            with self._lock:
                self._children.pop(pid, None)
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            started = handle.get("started")
            if started is not None:
                if abs(proc.create_time() - float(started)) > START_TOLERANCE:
                    return None  # the pid was reused
            elif handle["config"] not in proc.cmdline():
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def alive(self, attempt: Attempt) -> bool | None:
        if not attempt.handle:
            return None  # placed but not launched yet
        return self._process(attempt) is not None

    def cancel(self, attempt: Attempt) -> None:
        proc = self._process(attempt)
        if proc is not None:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass

    def kill(self, attempt: Attempt) -> bool:
        """SIGKILL the supervisor (a SIGSTOPped one too) and its command's process group, which
        the supervisor recorded in ``job.pid``, and wait until both are gone."""
        if not attempt.handle:
            return False
        run_dir = Path(orjson.loads(attempt.handle)["config"]).parent
        proc = self._process(attempt)
        if proc is not None:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
            with self._lock:
                child = self._children.pop(proc.pid, None)
            if child is not None:
                child.wait(KILL_WAIT)  # ours (the fallback's): reaped here
            _wait_until(lambda: _gone(proc))
        group = _job_group(run_dir)
        if group is not None:
            _kill_group(group)
        _remove_container(run_dir)
        return True


def _job_group(run_dir: Path) -> int | None:
    """The command's process group, if ``job.pid`` names one that is not a reused pid's."""
    try:
        info = orjson.loads((run_dir / JOB_PID_FILE).read_bytes())
        pid, started = int(info["pid"]), float(info["started"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    try:
        if abs(psutil.Process(pid).create_time() - started) > START_TOLERANCE:
            return None  # another process has that pid, so no group of ours can have that id
    except psutil.NoSuchProcess:
        pass  # the leader is gone; what it started may remain in its group (the id stays reserved)
    return pid


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    _wait_until(lambda: not _group_members(pgid))


def _gone(proc: psutil.Process) -> bool:
    """Dead: a zombie counts (where PID 1 does not reap, orphans stay zombies for good)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_until(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + KILL_WAIT
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of group ``pgid``."""
    members = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                members.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _remove_container(run_dir: Path) -> None:
    """A container job's command is its container, which outlives the runtime's client in the group."""
    try:
        spec = LaunchSpec.model_validate_json((run_dir / "supervisor.json").read_bytes())
    except (OSError, ValueError):
        return
    if spec.environment.image:
        # Imported here: only a container job's kill needs the supervisor's container module.
        from modelyard.supervisor.container import container_name, pick_runtime, remove_container
        from modelyard.supervisor.runner import StartFailed

        try:
            runtime = pick_runtime(spec.environment.container_runtime)
        except StartFailed as e:  # no runtime answers now: nothing can be running in one either
            log.warning("job %s attempt %s: its container is not removed: %s", spec.job_id, spec.attempt, e)
            return
        remove_container(runtime, container_name(spec))
