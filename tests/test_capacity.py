"""Capacity detection: the override syntax, NVML absent or present, and GPU usage samples."""
from __future__ import annotations

import os
from types import SimpleNamespace

import psutil
import pytest

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.executors.capacity import (
    Capacity, GpuInfo, detect_capacity, detect_gpus, gpu_usage, parse_override,
)

GiB = 1024**3


class FakeNVML:
    """NVML as pynvml exposes it, for machines without a GPU (a boundary we do not own)."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: int = 2, fail_init: bool = False) -> None:
        self.count, self.fail_init, self.open = gpus, fail_init, 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.open -= 1

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise self.NVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3"  # older bindings return bytes

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return f"GPU-{handle:08d}"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=80 * GiB, used=(handle + 1) * GiB, free=0)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=10 * (handle + 1), memory=0)


def test_override_parses_any_subset() -> None:
    assert parse_override("gpus=0,cpus=2,memory=8G") == {"gpus": 0, "cpus": 2.0, "memory": 8 * GiB}
    assert parse_override(" cpus = 1.5 ") == {"cpus": 1.5}
    assert parse_override("") == {} and parse_override(None) == {}


@pytest.mark.parametrize(("text", "part", "why"), [
    ("gpus=2,cpu=4", "cpu=4", "unknown resource 'cpu'"),
    ("gpus", "gpus", "key=value"),
    ("memory=", "memory=", "key=value"),
    ("gpus=1.5", "gpus=1.5", "not a valid gpus"),
    ("memory=lots", "memory=lots", "not a valid memory"),
    ("cpus=-1", "cpus=-1", "not negative"),
    ("cpus=nan", "cpus=nan", "finite"),
    ("gpus=1,gpus=2", "gpus=2", "given twice"),
])
def test_a_bad_override_names_the_bad_part(text: str, part: str, why: str) -> None:
    with pytest.raises(ModelyardError) as err:
        detect_capacity(text)
    assert err.value.code is ErrorCode.INVALID
    assert err.value.field == "MODELYARD_CAPACITY"
    assert repr(part) in err.value.message and why in err.value.message


def test_without_a_driver_there_are_no_gpus_and_no_error() -> None:
    assert detect_gpus(FakeNVML(fail_init=True)) == []
    assert gpu_usage([0, 1], nvml=FakeNVML(fail_init=True)) == []


def test_detection_on_this_machine() -> None:
    cap = detect_capacity(None)
    assert cap.total.cpus == len(os.sched_getaffinity(0))
    assert cap.total.memory == psutil.virtual_memory().total
    assert cap.total.gpus == len(cap.gpus) and cap.gpu_indices == tuple(range(cap.total.gpus))
    if not os.path.exists("/dev/nvidiactl"):  # no driver: no GPUs, and sampling is empty
        assert cap.gpus == () and gpu_usage([0]) == []
    else:
        assert all(g.memory_total > 0 and g.uuid for g in cap.gpus)
        assert [s["index"] for s in gpu_usage(cap.gpu_indices)] == list(cap.gpu_indices)


def test_gpus_from_nvml() -> None:
    nvml = FakeNVML(gpus=2)
    cap = detect_capacity("cpus=4,memory=16G", nvml=nvml)
    assert cap.gpus == (
        GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-00000000", 80 * GiB),
        GpuInfo(1, "NVIDIA H100 80GB HBM3", "GPU-00000001", 80 * GiB),
    )
    assert (cap.total.gpus, cap.total.cpus, cap.total.memory) == (2, 4.0, 16 * GiB)
    assert nvml.open == 0, "NVML left initialised"


def test_overriding_gpus_keeps_the_first_detected_and_declares_the_rest() -> None:
    assert detect_capacity("gpus=1", nvml=FakeNVML(gpus=2)).gpu_indices == (0,)
    cap = detect_capacity("gpus=3", nvml=FakeNVML(gpus=2))
    assert cap.gpu_indices == (0, 1, 2) and cap.total.gpus == 3
    assert cap.gpus[2].uuid is None and "declared" in cap.gpus[2].name
    assert detect_capacity("gpus=0", nvml=FakeNVML(gpus=2)).gpus == ()


def test_gpu_usage_samples_the_given_gpus_and_skips_unreadable_ones() -> None:
    nvml = FakeNVML(gpus=2)
    assert gpu_usage([1, 5], nvml=nvml) == [
        {"index": 1, "util": 20.0, "memory_used": 2 * GiB, "memory_total": 80 * GiB},
    ]
    assert gpu_usage([], nvml=nvml) == []
    assert nvml.open == 0


def test_capacity_as_json() -> None:
    cap = detect_capacity("gpus=1,cpus=2,memory=1G", nvml=FakeNVML(gpus=1), labels="gpu=h100")
    devices = [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-00000000", "memory_total": 80 * GiB}]
    assert cap.to_dict() == {
        "gpus": 1, "cpus": 2.0, "memory": GiB, "gpu_devices": devices,
        "nodes": [{"id": "local", "address": None, "labels": {"gpu": "h100"}, "gpus": 1, "cpus": 2.0,
                   "memory": GiB, "gpu_devices": devices}],
    }
    assert isinstance(cap, Capacity)
