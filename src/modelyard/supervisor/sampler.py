"""System-usage samples of the job: CPU% and RSS of its process tree, and its GPUs via NVML.

This module owns when samples are taken: as the command starts, every sampling
interval, and as it ends (``Sampler``), so that a job shorter than the interval
has samples too.

This module owns NVML: it is initialised once, and a machine without an NVIDIA
driver simply yields samples with no GPUs.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil

try:
    import pynvml
except ImportError:  # nvidia-ml-py is a dependency, but a broken install must not stop a job
    pynvml = None


# How often usage is read, whatever the sampling interval: the sample sent as the command
# ends is the last reading, at most this old, taken while the command still ran.
READ_EVERY = 1.0


class Sampler:
    """Sends a sample as the command starts, one every ``interval``, and one as it ends.

    A job shorter than the interval still gets two: the first (its memory; CPU has no
    reading yet, so ``cpu_percent`` is None) and the last reading before it ended, sent
    by ``stop`` before the supervisor's final report.
    """

    def __init__(self, pid: int, gpus: Sequence[int], interval: float, emit: Callable[[dict[str, Any]], None]) -> None:
        self.pid = pid
        self.interval = interval
        self.emit = emit
        self._procs: dict[int, psutil.Process] = {}  # kept so cpu_percent has a previous reading
        self._gpus = _GpuProbe(gpus)
        self._pending: dict[str, Any] | None = None  # the newest reading not sent yet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelyard-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._pending is not None and not self._thread.is_alive():
            self._send(self._pending)  # as it ends: the last reading taken while it ran
        self._gpus.close()

    def _run(self) -> None:
        first = self._read()
        if first is not None:
            first["cpu_percent"] = None  # a process's first CPU reading is always 0.0: none yet
            self._send(first)
        sent = time.monotonic()
        while not self._stop.wait(min(self.interval, READ_EVERY)):
            reading = self._read()
            if reading is None:
                continue
            if time.monotonic() - sent >= self.interval * 0.99:
                self._send(reading)
                sent = time.monotonic()
            else:
                self._pending = reading

    def _send(self, sample: dict[str, Any]) -> None:
        self._pending = None
        try:
            self.emit(sample)
        except Exception:  # the loop boundary: a failed sample must not end sampling
            pass

    def _read(self) -> dict[str, Any] | None:
        try:
            return self.sample()
        except Exception:  # psutil or NVML trouble: no reading this time
            return None

    def sample(self) -> dict[str, Any] | None:
        """The job's usage now, or None once its process is gone (a reading of nothing is not one)."""
        usage = self._tree_usage()
        if usage is None:
            return None
        cpu, rss = usage
        return {"t": time.time(), "cpu_percent": cpu, "memory_rss": rss, "gpus": self._gpus.read()}

    def _tree_usage(self) -> tuple[float, int] | None:
        try:
            root = psutil.Process(self.pid)
            if root.status() == psutil.STATUS_ZOMBIE:
                return None
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        cpu, rss, seen = 0.0, 0, {}
        for p in procs:
            p = self._procs.get(p.pid, p)
            try:
                with p.oneshot():
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
            seen[p.pid] = p
        self._procs = seen
        return cpu, rss


class _GpuProbe:
    def __init__(self, indices: Sequence[int]) -> None:
        self.handles: list[tuple[int, Any]] = []
        if not indices or pynvml is None:
            return
        try:
            pynvml.nvmlInit()
            self.handles = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in indices]
        except Exception:  # no driver, no device: samples carry no GPUs
            self.handles = []

    def read(self) -> list[dict[str, Any]]:
        out = []
        for index, h in self.handles:
            try:
                util = pynvml.nvmlDeviceGetUtilizationRates(h)
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            except Exception:
                continue
            out.append({"index": index, "util": float(util.gpu), "memory_used": int(mem.used), "memory_total": int(mem.total)})
        return out

    def close(self) -> None:
        if self.handles:
            try:
                pynvml.nvmlShutdown()
            except Exception:
                pass
            self.handles = []
