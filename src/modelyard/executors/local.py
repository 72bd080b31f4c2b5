"""The local executor: each attempt's supervisor is a subprocess in its own session.

A supervisor outlives the server (its own session, not a child that dies with
it). After a restart the server finds it again by the pid in the attempt's
handle, checking the command line for the attempt's config path so that a
reused pid is never mistaken for the job.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import orjson
import psutil

from modelyard.executors.base import Launch
from modelyard.store.records import Attempt


# the server's own secrets and settings are not the job's business
_SERVER_ONLY = ("MODELYARD_DATABASE_URL", "MODELYARD_TOKEN", "MODELYARD_URL", "MODELYARD_WEBHOOKS", "MODELYARD_CAPACITY")


def supervisor_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_ONLY}
    # NVML (capacity, sampling) numbers GPUs in PCI bus order; CUDA must read
    # CUDA_VISIBLE_DEVICES in the same order, or a job gets another job's GPU
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


class LocalExecutor:
    name = "local"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, launch: Launch) -> str:
        launch.run_dir.mkdir(parents=True, exist_ok=True)
        config_path = launch.run_dir / "supervisor.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(launch.config))
        with open(launch.run_dir / "supervisor.log", "ab") as log:
            # sys.executable, not "python": a pyenv shim costs ~80 ms per spawn
            proc = subprocess.Popen(
                [sys.executable, "-m", "modelyard.supervisor", str(config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=launch.run_dir, env=supervisor_env(), start_new_session=True, close_fds=True,
            )
        with self._lock:
            self._children[proc.pid] = proc
        return orjson.dumps({"pid": proc.pid, "config": str(config_path)}).decode()

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
            if proc.status() == psutil.STATUS_ZOMBIE or handle["config"] not in proc.cmdline():
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
