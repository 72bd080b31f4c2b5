"""What this machine can hold: GPUs (NVML), CPU cores and memory (psutil).

This module owns the answer to "how much is there to schedule?" for the
local executor, and GPU usage sampling for the supervisor. No NVIDIA driver or
library means zero GPUs, not an error. An operator may override any part with
``MODELYARD_CAPACITY``, e.g. ``gpus=0,cpus=2,memory=8G``.

GPU indices are NVML's (PCI bus order); a job's ``CUDA_VISIBLE_DEVICES`` names
them, which matches CUDA's numbering when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.nodes import LOCAL_NODE, parse_labels
from modelyard.jobs.spec import Resources
from modelyard.jobs.units import parse_size

OVERRIDE_FIELD = "MODELYARD_CAPACITY"


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    uuid: str | None
    memory_total: int  # bytes


@dataclass(frozen=True, slots=True)
class Node:
    """One machine the scheduler places on: its GPUs by index, CPUs, memory and labels."""

    id: str  # LOCAL_NODE for the local executor; Ray's node id on a cluster
    total: Resources
    gpus: tuple[GpuInfo, ...] = field(default=())
    labels: Mapping[str, str] = field(default_factory=dict)
    address: str | None = None  # where other nodes reach it (a multi-node job's MASTER_ADDR)

    @property
    def gpu_indices(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "address": self.address, "labels": dict(self.labels),
            "gpus": self.total.gpus, "cpus": self.total.cpus, "memory": self.total.memory,
            "gpu_devices": [
                {"index": g.index, "name": g.name, "uuid": g.uuid, "memory_total": g.memory_total}
                for g in self.gpus
            ],
        }


@dataclass(frozen=True, slots=True)
class Capacity:
    """Everything schedulable: a set of nodes (the local executor's is one, ``LOCAL_NODE``)."""

    nodes: tuple[Node, ...]

    @classmethod
    def one(cls, total: Resources, gpus: Sequence[GpuInfo] = (), *, node: str = LOCAL_NODE,
            labels: Mapping[str, str] | None = None, address: str | None = None) -> "Capacity":
        """A single machine's capacity."""
        return cls((Node(node, total, tuple(gpus), dict(labels or {}), address),))

    @property
    def total(self) -> Resources:
        """The sum over the nodes (what the platform has in all, not what one job can get)."""
        return Resources.model_construct(
            gpus=sum(n.total.gpus for n in self.nodes), cpus=sum(n.total.cpus for n in self.nodes),
            memory=sum(n.total.memory for n in self.nodes))

    @property
    def gpus(self) -> tuple[GpuInfo, ...]:
        """Every node's GPUs, in node order (indices repeat across nodes)."""
        return tuple(g for n in self.nodes for g in n.gpus)

    @property
    def gpu_indices(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)

    def node(self, node_id: str) -> Node | None:
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None

    def to_dict(self) -> dict[str, Any]:
        total = self.total
        return {
            "gpus": total.gpus, "cpus": total.cpus, "memory": total.memory,
            "gpu_devices": [
                {"index": g.index, "name": g.name, "uuid": g.uuid, "memory_total": g.memory_total}
                for g in self.gpus
            ],
            "nodes": [n.to_dict() for n in self.nodes],
        }


def detect_capacity(override: str | None = None, *, nvml: Any | None = None,
                    labels: str | None = None) -> Capacity:
    """This machine's capacity, with any part given in ``override`` taking precedence."""
    parts = parse_override(override)
    gpus = detect_gpus(nvml)
    if "gpus" in parts:
        gpus = _declared_gpus(gpus, int(parts["gpus"]))
    cpus = float(parts["cpus"]) if "cpus" in parts else float(_cpu_count())
    memory = int(parts["memory"]) if "memory" in parts else int(psutil.virtual_memory().total)
    return Capacity.one(Resources(gpus=len(gpus), cpus=cpus, memory=memory), tuple(gpus),
                        labels=local_labels(labels))


LABELS_FIELD = "MODELYARD_NODE_LABELS"


def local_labels(text: str | None) -> dict[str, str]:
    """The local node's labels, ``MODELYARD_NODE_LABELS`` (``gpu=h100,zone=a``)."""
    try:
        return parse_labels(text)
    except ValueError as exc:
        raise ModelyardError(ErrorCode.INVALID, f"{LABELS_FIELD}: {exc}", field=LABELS_FIELD) from None


def parse_override(text: str | None) -> dict[str, float]:
    """``"gpus=0,cpus=2,memory=8G"`` (any subset) as numbers; memory in bytes."""
    result: dict[str, float] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not value:
            raise _bad(part, text, "expected key=value")
        if key not in _PARSERS:
            raise _bad(part, text, f"unknown resource {key!r} (use gpus, cpus, memory)")
        if key in result:
            raise _bad(part, text, f"{key} given twice")
        try:
            number = _PARSERS[key](value)
        except ValueError:
            raise _bad(part, text, f"{value!r} is not a valid {key} amount") from None
        if not math.isfinite(number) or number < 0:
            raise _bad(part, text, f"{key} must be a finite number, not negative")
        result[key] = number
    return result


def _bad(part: str, text: str | None, why: str) -> ModelyardError:
    return ModelyardError(ErrorCode.INVALID, f"bad part {part!r} in {text!r}: {why}", field=OVERRIDE_FIELD)


_PARSERS = {"gpus": int, "cpus": float, "memory": parse_size}


def _cpu_count() -> int:
    # The server may be pinned (taskset, cpusets) to fewer cores than the machine has.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return psutil.cpu_count(logical=True) or 1


def _declared_gpus(found: list[GpuInfo], count: int) -> list[GpuInfo]:
    """The first ``count`` GPUs found; beyond those, declared placeholders.

    Declaring GPUs the machine lacks lets GPU scheduling be exercised on a
    machine without any; such jobs see indices CUDA cannot open and run on CPU.
    """
    gpus = found[:count]
    for index in range(len(gpus), count):
        gpus.append(GpuInfo(index=index, name="declared (not detected)", uuid=None, memory_total=0))
    return gpus


def _load_nvml(nvml: Any | None) -> Any | None:
    """NVML, initialised, or None where there is no driver or library."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return None
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable GPU
        return None
    return nvml


def detect_gpus(nvml: Any | None = None) -> list[GpuInfo]:
    """Every GPU NVML sees, by index; [] without a driver. ``nvml`` defaults to pynvml."""
    lib = _load_nvml(nvml)
    if lib is None:
        return []
    try:
        gpus = []
        for index in range(lib.nvmlDeviceGetCount()):
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            gpus.append(GpuInfo(
                index=index,
                name=_text(lib.nvmlDeviceGetName(handle)),
                uuid=_text(lib.nvmlDeviceGetUUID(handle)),
                memory_total=int(lib.nvmlDeviceGetMemoryInfo(handle).total),
            ))
        return gpus
    finally:
        lib.nvmlShutdown()


def gpu_usage(indices: Sequence[int], *, nvml: Any | None = None) -> list[dict[str, float | int]]:
    """Utilisation and memory of the GPUs at ``indices``, as the report protocol's ``gpus`` entries.

    Returns [] without NVML; a GPU that cannot be read is left out rather than failing the sample.
    """
    if not indices:
        return []
    lib = _load_nvml(nvml)
    if lib is None:
        return []
    try:
        samples = []
        for index in indices:
            try:
                handle = lib.nvmlDeviceGetHandleByIndex(index)
                util = lib.nvmlDeviceGetUtilizationRates(handle)
                mem = lib.nvmlDeviceGetMemoryInfo(handle)
            except Exception:  # a declared or vanished GPU, or one that does not report utilisation
                continue
            samples.append({"index": index, "util": float(util.gpu), "memory_used": int(mem.used),
                            "memory_total": int(mem.total)})
        return samples
    finally:
        lib.nvmlShutdown()


def _text(value: str | bytes) -> str:
    # Older NVML bindings return bytes.
    return value.decode() if isinstance(value, bytes) else value
