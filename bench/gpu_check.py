"""``make gpu-check`` (``python -m bench.gpu_check``): the GPU paths, on a machine with an NVIDIA GPU.

Five checks, at most ~5 minutes, through a real server and real jobs:

- ``nvml``: the driver answers and the server's capacity counts its GPUs;
- ``distinct_gpus``: two 1-GPU jobs running at once are given different GPUs
  (``CUDA_VISIBLE_DEVICES``; with PyTorch installed, each also sees exactly one);
- ``image_gpu``: an ``--image`` job sees exactly its GPU (``nvidia-smi -L`` inside
  lists one, with that GPU's UUID), which needs Podman or Docker and the NVIDIA
  container toolkit (Podman: a CDI spec from ``nvidia-ctk cdi generate``);
- ``digits_demo``: examples/digits-cnn trains on the GPU (needs PyTorch);
- ``gpu_samples``: a GPU job's system metrics hold GPU samples.

It prints one JSON document: each check ``passed`` (true, false, or null where
what it needs is absent, with ``why``). Exit 0 when none failed, 1 when one did,
2 where there is no NVIDIA GPU. Nothing but the project and the driver is needed;
the image for ``image_gpu`` is made here from the host's own libc and shell.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Check = dict[str, Any]


def nvml_gpus() -> list[dict[str, Any]]:
    """Every GPU NVML sees (index, name, uuid); raises RuntimeError('no NVIDIA GPU: ...') otherwise."""
    try:
        import pynvml
    except ImportError as e:
        raise RuntimeError(f"no NVIDIA GPU: nvidia-ml-py is not installed ({e})") from None
    try:
        pynvml.nvmlInit()
    except Exception as e:  # the library or the driver is missing
        raise RuntimeError(f"no NVIDIA GPU: NVML did not initialise ({e})") from None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append({"index": i, "name": _text(pynvml.nvmlDeviceGetName(h)),
                         "uuid": _text(pynvml.nvmlDeviceGetUUID(h))})
    finally:
        pynvml.nvmlShutdown()
    if not gpus:
        raise RuntimeError("no NVIDIA GPU: NVML answers but counts 0 devices")
    return gpus


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# -- the checks --------------------------------------------------------------------


def check_nvml(server: Any, gpus: list[dict[str, Any]]) -> Check:
    capacity = server.client.capacity()
    counted = capacity["total"]["gpus"]
    return {"passed": counted == len(gpus) and len(capacity["gpus"]) == len(gpus), "gpus": gpus,
            "server_capacity": capacity}


GPU_PROBE = """
import json, os, time
seen = {"cvd": os.environ.get("CUDA_VISIBLE_DEVICES")}
try:
    import torch
    if torch.cuda.is_available():  # a declared GPU (MODELYARD_CAPACITY) is none to CUDA
        seen["torch_devices"] = torch.cuda.device_count()
except ImportError:
    pass
print(json.dumps(seen), flush=True)
time.sleep(4)  # long enough for both jobs to be seen running at once
"""


def check_distinct(server: Any, gpus: list[dict[str, Any]]) -> Check:
    if len(gpus) < 2:
        return {"passed": None, "why": f"needs 2 GPUs, the machine has {len(gpus)}"}
    ids = [server.submit([sys.executable, "-c", GPU_PROBE], gpus=1) for _ in range(2)]
    for job_id in ids:
        server.wait_state(job_id, {"running"}, timeout=60, interval=0.05)
    both_running = all(server.state(j) == "running" for j in ids)
    seen = [_probe_line(server, server.wait_state(j, TERMINAL, timeout=60, interval=0.1)["id"]) for j in ids]
    cvds = [s.get("cvd") for s in seen]
    one_each = all(s.get("torch_devices", 1) == 1 for s in seen)
    return {"passed": both_running and len(set(cvds)) == 2 and all(cvds) and one_each, "seen": seen,
            "ran_at_once": both_running}


def check_image(server: Any, gpus: list[dict[str, Any]]) -> Check:
    runtime = next((r for r in ("podman", "docker") if shutil.which(r) and _answers(r)), None)
    if runtime is None:
        return {"passed": None, "why": "no container runtime answers (podman or docker)"}
    toolkit = shutil.which("nvidia-ctk") or shutil.which("nvidia-container-cli")
    cdi = [p for p in ("/etc/cdi/nvidia.yaml", "/var/run/cdi/nvidia.yaml") if Path(p).exists()]
    if toolkit is None or (runtime == "podman" and not cdi):
        return {"passed": None, "runtime": runtime,
                "why": "the NVIDIA container toolkit is absent" if toolkit is None else
                       "no CDI spec for Podman: run `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`"}
    image = host_image(runtime)
    target = gpus[-1]  # the last GPU, so that "sees GPU 0 by accident" cannot pass
    job_id = server.submit(["sh", "-c", "echo CVD=$CUDA_VISIBLE_DEVICES; nvidia-smi -L"], image=image,
                           gpus=len(gpus))  # asks for all: the check is that it sees what it was given
    job = server.wait_state(job_id, TERMINAL, timeout=120, interval=0.1)
    lines = [x["text"] for x in server.client.job_logs(job_id)["lines"]]
    listed = [x for x in lines if x.startswith("GPU ")]
    cvd = next((x.split("=", 1)[1] for x in lines if x.startswith("CVD=")), None)
    expect = ",".join(str(i) for i in range(len(gpus)))
    ok = job["state"] == "succeeded" and len(listed) == len(gpus) and cvd == expect
    one = _image_one_gpu(server, image, target) if ok and len(gpus) > 1 else None
    return {"passed": ok and (one is None or one["passed"]), "runtime": runtime, "all": {"listed": listed, "cvd": cvd},
            "one": one, "log": lines[-10:]}


def _image_one_gpu(server: Any, image: str, target: dict[str, Any]) -> Check:
    """A 1-GPU --image job, placed while every other GPU is held by a bare job: it must see only its GPU."""
    holders = [server.submit(["sleep", "60"], gpus=1) for _ in range(target["index"])]
    for h in holders:
        server.wait_state(h, {"running"}, timeout=60, interval=0.05)
    job_id = server.submit(["sh", "-c", "echo CVD=$CUDA_VISIBLE_DEVICES; nvidia-smi -L"], image=image, gpus=1)
    job = server.wait_state(job_id, TERMINAL, timeout=120, interval=0.1)
    for h in holders:
        server.client.stop_job(h)
    lines = [x["text"] for x in server.client.job_logs(job_id)["lines"]]
    listed = [x for x in lines if x.startswith("GPU ")]
    return {"passed": job["state"] == "succeeded" and len(listed) == 1 and target["uuid"] in listed[0]
            and "CVD=0" in lines, "listed": listed, "expected_uuid": target["uuid"]}


def check_demo(server: Any) -> Check:
    try:
        import torch  # noqa: F401
    except ImportError:
        return {"passed": None, "why": "PyTorch is not installed in this interpreter (make install adds it)"}
    example = ROOT / "examples" / "digits-cnn"
    job_id = server.submit([sys.executable, "train.py", "--epochs", "2"], workdir=example, gpus=1, cpus=2)
    job = server.wait_state(job_id, TERMINAL, timeout=180, interval=0.2)
    lines = [x["text"] for x in server.client.job_logs(job_id)["lines"]]
    on = next((x for x in lines if x.startswith("training on ")), "")
    return {"passed": job["state"] == "succeeded" and on.startswith("training on cuda"), "line": on,
            "job_id": job_id, "message": job.get("message")}


def check_samples(server: Any, job_id: int | None) -> Check:
    if job_id is None:  # no demo ran: a GPU job long enough for a sample or two
        job_id = server.submit(["sleep", "12"], gpus=1)
        server.wait_state(job_id, TERMINAL, timeout=60, interval=0.2)
    samples = server.client.system_metrics(job_id)["samples"]
    with_gpu = [s for s in samples if s.get("gpus")]
    return {"passed": bool(with_gpu), "samples": len(samples), "first_gpu_sample": with_gpu[0] if with_gpu else None}


# -- helpers -----------------------------------------------------------------------

TERMINAL = {"succeeded", "failed", "stopped", "timed_out", "lost"}


def _probe_line(server: Any, job_id: int) -> dict[str, Any]:
    for x in server.client.job_logs(job_id)["lines"]:
        if x["text"].startswith("{"):
            return json.loads(x["text"])
    return {}


def _answers(runtime: str) -> bool:
    probe = [runtime, "version"] + ([] if runtime == "podman" else ["--format", "{{.Server.Version}}"])
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def host_image(runtime: str) -> str:
    """An image of the host's /bin/sh and the libraries it and nvidia-smi link (no registry, no mirror)."""
    files = {"/bin/sh", *_libs("/bin/sh")}
    smi = shutil.which("nvidia-smi")
    if smi:
        files |= set(_libs(smi))
    tag = hashlib.sha256(" ".join(sorted(files)).encode()).hexdigest()[:12]
    ref = f"localhost/modelyard-gpu-check:{tag}"
    if subprocess.run([runtime, "image", "inspect", ref], capture_output=True).returncode == 0:
        return ref
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        for f in sorted(files):
            dest = root / f.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(f), dest)
        for d in ("tmp", "proc", "sys", "dev", "etc"):
            (root / d).mkdir(exist_ok=True)
        tar = Path(tmp) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
        subprocess.run([runtime, "import", str(tar), ref], check=True, capture_output=True)
    return ref


def _libs(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return [p for line in out.splitlines() for p in line.split() if p.startswith("/")]


def _run(name: str, fn: Callable[[], Check], results: dict[str, Check]) -> None:
    t0 = time.monotonic()
    try:
        results[name] = fn()
    except Exception as e:  # one check's failure is its result; the others still run
        results[name] = {"passed": False, "error": f"{type(e).__name__}: {e}"}
    results[name]["took_s"] = round(time.monotonic() - t0, 1)
    print(f"gpu-check: {name}: {results[name]['passed']}", file=sys.stderr, flush=True)


def main() -> int:
    try:
        gpus = nvml_gpus()
    except RuntimeError as e:
        print(json.dumps({"passed": False, "error": str(e)}, indent=2))
        return 2
    sys.path.insert(0, str(ROOT))
    from bench.ours import Server

    results: dict[str, Check] = {}
    with Server() as server:
        _run("nvml", lambda: check_nvml(server, gpus), results)
        _run("distinct_gpus", lambda: check_distinct(server, gpus), results)
        _run("image_gpu", lambda: check_image(server, gpus), results)
        _run("digits_demo", lambda: check_demo(server), results)
        demo_job = results["digits_demo"].get("job_id") if results["digits_demo"].get("passed") else None
        _run("gpu_samples", lambda: check_samples(server, demo_job), results)
    failed = [k for k, v in results.items() if v["passed"] is False]
    print(json.dumps({"passed": not failed, "failed": failed,
                      "not_run": [k for k, v in results.items() if v["passed"] is None], "checks": results},
                     indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
