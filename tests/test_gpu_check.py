"""``make gpu-check``'s parts that run without a GPU: its verdict here, its two-jobs check on
declared GPUs, and the image it builds from the host's own files for the ``--image`` check."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from images import podman, use_test_containers_conf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ is not installed; `python -m pytest` finds it, plain `pytest` too
from bench import gpu_check  # noqa: E402
from bench.ours import Server  # noqa: E402


def test_the_check_says_plainly_when_there_is_no_gpu() -> None:
    try:
        gpu_check.nvml_gpus()
        has_gpu = True
    except RuntimeError:
        has_gpu = False
    if not has_gpu:  # this machine and CI's: no driver
        done = subprocess.run([sys.executable, "-m", "bench.gpu_check"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2
        assert json.loads(done.stdout)["error"].startswith("no NVIDIA GPU: ")


def test_two_one_gpu_jobs_get_distinct_gpus() -> None:
    # declared GPUs: the scheduler's placement and CUDA_VISIBLE_DEVICES, without CUDA
    with Server(env={"MODELYARD_CAPACITY": "gpus=2,cpus=2,memory=4G"}) as server:
        result = gpu_check.check_distinct(server, [{"index": 0}, {"index": 1}])
    assert result["passed"] is True, result
    assert sorted(s["cvd"] for s in result["seen"]) == ["0", "1"]


def test_the_host_image_runs_a_shell() -> None:
    use_test_containers_conf()
    ref = gpu_check.host_image(podman())
    done = subprocess.run([podman(), "run", "--rm", ref, "sh", "-c", "echo CVD=$CUDA_VISIBLE_DEVICES ok"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "CVD= ok", done.stderr
