"""The ``--requirements`` row: submit -> running with a cached venv against a job with no environment.

The venv holds one tiny wheel made here, installed with ``--no-index``: the row
measures what the platform adds per job once the venv is in the machine's
cache (the lookup, the locks, the last-used stamp, the eviction check), not a
download.
"""
from __future__ import annotations

import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from bench.harness import Side, alternate, summary
from bench.ours import STARTED, TERMINAL, TRIVIAL, Server
from bench.scenarios import Context, row

ADDED_AT_MOST = 0.050  # seconds a cached venv may add to the median


def tiny_requirements() -> str:
    folder = Path(tempfile.mkdtemp(prefix="modelyard-bench-wheels-"))
    dist = "benchpkg-1.0.dist-info"
    files = {"benchpkg/__init__.py": "VALUE = 1\n",
             f"{dist}/METADATA": "Metadata-Version: 2.1\nName: benchpkg\nVersion: 1.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{k},,\n" for k in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(folder / "benchpkg-1.0-py3-none-any.whl", "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
    return f"--no-index\n--find-links {folder}\nbenchpkg==1.0\n"


def submit_to_running_venv(ctx: Context, server: Server) -> dict[str, Any]:
    n = ctx.sizes.submit_jobs
    req = tiny_requirements()
    client = server.client
    assert client is not None

    def timed(extra: dict[str, Any]) -> list[float]:
        # a real interpreter on both sides, never a shim: "python" in a venv is its bin/python
        command = ["python" if extra else sys.executable, "-c", "pass"]
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            job_id = int(client.submit_job({"command": command, "resources": TRIVIAL, **extra})["id"])
            server.wait_state(job_id, STARTED)
            out.append(time.perf_counter() - t0)
            if server.wait_state(job_id, TERMINAL, interval=0.02)["state"] != "succeeded":
                raise RuntimeError(f"job {job_id} did not succeed: {client.get_job(job_id)['message']}")
        return out

    for extra in ({"requirements": req}, {}):  # warm-up; the first also builds the venv into the cache
        timed(extra)
    cached = Side("modelyard", lambda: timed({"requirements": req}))
    bare = Side("no environment (same server)", lambda: timed({}))
    alternate([cached, bare], ctx.sizes.repeat)
    # the baseline is ours too, not a peer: it is kept beside the row rather than among the peers
    baseline = summary(bare.samples)
    result = row("submit_to_running_venv", "s", f"a cached --requirements venv adds <= {ADDED_AT_MOST * 1000:.0f} ms "
                 "to submit -> running p50", cached, [], higher_is_better=False,
                 met=lambda s, _p: baseline is not None and s["median"] - baseline["median"] <= ADDED_AT_MOST,
                 notes=f"{n} jobs (`python -c pass`) one after another per side and repetition, alternating "
                       "with the same jobs with no environment (`baseline`); the venv (one local wheel) was "
                       "built by an untimed warm-up job")
    result["baseline"] = {"name": bare.label, **(baseline or {})}
    return result
