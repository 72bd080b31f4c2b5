"""The ``--image`` rows: what the platform adds on top of the container runtime alone.

Both scenarios run against a baseline measured in the same run, alternately:
``podman run`` of the same image by hand (submit -> first line), and the same
CPU loop as a bare process (training). The image is the tests' (tests/images.py:
Debian bookworm with python3, built here with debootstrap, cached by recipe),
so the bare side runs Debian's /usr/bin/python3, the interpreter the image has.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from typing import Any

from bench.harness import Side, alternate, summary, wait_until
from bench.ours import Server, iso_time
from bench.scenarios import ROOT, Context, row

sys.path.insert(0, str(ROOT / "tests"))  # the image builder the tests use: one recipe, one cache
import images  # noqa: E402

LOOP = """\
import sys, time
t0, c0 = time.perf_counter(), time.process_time()
acc = 0
for i in range(int(sys.argv[1])):
    acc = (acc * 31 + i) % 1000003
print("took %r %r" % (time.perf_counter() - t0, time.process_time() - c0), flush=True)
"""


def prepare() -> str:
    """The image (built or reused) and CONTAINERS_CONF for the server about to start."""
    return images.python_image()


def _first_line(server: Server, job_id: int, text: str) -> None:
    client = server.client
    assert client is not None
    wait_until(lambda: any(x["text"] == text for x in client.job_logs(job_id)["lines"]),
               timeout=120, interval=0.005, what=f"job {job_id}'s line {text!r}")


def submit_to_first_line(ctx: Context, server: Server, image: str) -> dict[str, Any]:
    n = ctx.sizes.image_jobs
    assert server.client is not None
    client = server.client
    running: list[float] = []

    def ours() -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            job_id = server.submit(["echo", "up"], image=image)
            server.wait_state(job_id, {"running", "succeeded", "failed"})
            running.append(time.perf_counter() - t0)
            _first_line(server, job_id, "up")
            out.append(time.perf_counter() - t0)
            server.wait_state(job_id, {"succeeded", "failed"}, interval=0.02)
        return out

    def alone() -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            proc = subprocess.Popen([images.podman(), "run", "--rm", "--network", "host", image, "echo", "up"],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
            out.append(time.perf_counter() - t0)
            proc.wait()
        return out

    server.wait_state(server.submit(["true"], image=image), {"succeeded", "failed"})  # warm-up, as podman's side gets one
    alone()
    mine, baseline = Side("modelyard", ours), Side("podman run alone", alone)
    alternate([baseline, mine], ctx.sizes.repeat)
    base = summary(baseline.samples)
    r = row("submit_to_first_line_image", "s", "<= podman run alone + 0.5 s", mine, [], higher_is_better=False,
            met=lambda s, p: base is not None and s["median"] - base["median"] <= 0.5,
            notes=f"{n} jobs `echo up` in the test image, one at a time: the submit call until the line `up` is "
                  "in GET /jobs/ID/logs (polled every 5 ms), against `podman run --rm IMAGE echo up` until its "
                  "stdout's first line, alternately in the same run; `running_s` is submit -> state running")
    r["baseline"] = base
    r["running_s"] = summary(running)
    return r


def training(ctx: Context, server: Server, image: str) -> dict[str, Any]:
    iterations = ctx.sizes.image_loop
    python = shutil.which("python3", path="/usr/bin") or "/usr/bin/python3"
    assert server.client is not None
    client = server.client
    bare_times: list[float] = []
    bare_cpu: list[float] = []
    job_times: list[float] = []
    cpu_ratios: list[float] = []

    def bare() -> float:
        out = subprocess.run([python, "-c", LOOP, str(iterations)], capture_output=True, text=True, check=True)
        bare_times.append(float(out.stdout.split()[1]))
        bare_cpu.append(float(out.stdout.split()[2]))
        return bare_times[-1]

    def ours() -> float:
        job_id = server.submit(["python3", "-c", LOOP, str(iterations)], image=image, cpus=1)
        job = server.wait_state(job_id, {"succeeded", "failed"}, interval=0.05)
        if job["state"] != "succeeded":
            raise RuntimeError(f"the loop job ended {job['state']}: {job.get('message')}")
        took, cpu = next((float(x["text"].split()[1]), float(x["text"].split()[2]))
                         for x in client.job_logs(job_id)["lines"] if x["text"].startswith("took "))
        cpu_ratios.append(bare_cpu[-1] / cpu)
        job_times.append(iso_time(job["attempts"][-1]["ended_at"]) - server.running_at(job_id))
        return bare_times[-1] / took

    mine = Side("modelyard", ours)
    alternate([Side("bare", bare), mine], ctx.sizes.repeat)
    b = summary(bare_times)
    r = row("training_image", "ratio", ">= 0.98", mine, [], higher_is_better=True,
               met=lambda s, p: s["median"] >= 0.98,
               notes=f"a pure-Python CPU loop of {iterations:,} steps: its own time as a bare /usr/bin/python3 "
                     f"process / its own time as an --image job (bare median {b['median']:.2f} s); the job's whole "
                     f"running time, container start included, was median {summary(job_times)['median']:.2f} s"
               if b and job_times else None)
    # CPU time is what the loop costs, whatever else the machine runs; wall time is shared out
    # between cgroups under load, and the container is a cgroup of its own
    r["cpu_time_ratio"] = summary(cpu_ratios)
    return r
