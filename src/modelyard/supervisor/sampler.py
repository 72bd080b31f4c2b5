"""System-usage samples of the job: CPU% and RSS of its process tree, and its GPUs via NVML.

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


class Sampler:
    def __init__(self, pid: int, gpus: Sequence[int], interval: float, emit: Callable[[dict[str, Any]], None]) -> None:
        self.pid = pid
        self.interval = interval
        self.emit = emit
        self._procs: dict[int, psutil.Process] = {}  # kept so cpu_percent has a previous reading
        self._gpus = _GpuProbe(gpus)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelyard-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._gpus.close()

    def _run(self) -> None:
        self.sample()  # primes cpu_percent; the first reading of a process is 0.0
        while not self._stop.wait(self.interval):
            try:
                self.emit(self.sample())
            except Exception:  # the loop boundary: a failed sample must not end sampling
                continue

    def sample(self) -> dict[str, Any]:
        cpu, rss = self._tree_usage()
        return {"t": time.time(), "cpu_percent": cpu, "memory_rss": rss, "gpus": self._gpus.read()}

    def _tree_usage(self) -> tuple[float, int]:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0, 0
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
