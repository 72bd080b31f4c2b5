"""A real modelyard server in a subprocess, the client the CLI uses, and the jobs the scenarios submit.

The server runs with the interpreter running the bench (``sys.executable``,
resolved: never a pyenv shim) and a fresh ``MODELYARD_HOME``.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench.harness import wait_until
from modelyard.client import Client

TERMINAL = {"succeeded", "failed", "stopped", "timed_out", "lost"}
STARTED = TERMINAL | {"running", "stopping"}
# Ray's entrypoint asks for no CPU by default; ours asks for none either, so
# neither side's throughput is bounded by its scheduler's CPU accounting.
TRIVIAL = {"cpus": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Server:
    """``python -m modelyard.server`` on a free port, with its own home; a context manager."""

    def __init__(self, *, database_url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "MODELYARD_HOME": str(self.home), **(env or {})}
        for var in ("MODELYARD_URL", "MODELYARD_TOKEN", "MODELYARD_DATABASE_URL"):
            self.env.pop(var, None)
        if database_url:
            self.env["MODELYARD_DATABASE_URL"] = database_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Client | None = None
        self.started_in = 0.0

    def start(self) -> "Server":
        log = open(self.home / "bench-server.log", "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "modelyard.server", "--port", str(self.port)],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._healthy, timeout=60, interval=0.01, what=f"modelyard server (log {self.home})")
        self.started_in = time.perf_counter() - t0
        token = (self.home / "token").read_text().strip()
        self.client = Client(self.url, token, timeout=120)
        # raw reads for the read scenarios: the bytes, parsed with orjson (the SDK parses with json)
        self.http = httpx.Client(base_url=f"{self.url}/api/v1", headers={"Authorization": f"Bearer {token}"},
                                 timeout=120, transport=httpx.HTTPTransport(
                                     socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]))
        return self

    def read_metrics(self, job_id: int, **params: Any) -> dict[str, Any]:
        resp = self.http.get(f"/jobs/{job_id}/metrics", params=params)
        resp.raise_for_status()
        return orjson.loads(resp.content)

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"modelyard server exited: {(self.home / 'bench-server.log').read_text()[-2000:]}")
        return healthy(f"{self.url}/api/v1/health")

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for child in _orphans(self.home):
            child.kill()
        shutil.rmtree(self.home, ignore_errors=True)

    def rss_mb(self) -> float:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def supervisors(self) -> list[psutil.Process]:
        """This server's supervisors: forked by its zygote (whose command line they carry, naming this
        home) and reparented, or started afresh; not the zygote itself, the server's child."""
        assert self.proc is not None
        found = []
        for p in psutil.process_iter(["cmdline", "ppid"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "modelyard.supervisor" in cmd and str(self.home) in cmd and p.info["ppid"] != self.proc.pid:
                found.append(p)
        return found

    # -- jobs ---------------------------------------------------------------

    def submit(self, command: list[str] | str, *, workdir: Path | None = None, image: str | None = None,
               **resources: Any) -> int:
        assert self.client is not None
        spec: dict[str, Any] = {"command": command, "resources": {**TRIVIAL, **resources}}
        if workdir is not None:
            spec["workdir"] = str(workdir)
        if image is not None:
            spec["image"] = image
        return int(self.client.submit_job(spec)["id"])

    def state(self, job_id: int) -> str:
        assert self.client is not None
        return str(self.client.get_job(job_id)["state"])

    def wait_state(self, job_id: int, states: set[str], *, timeout: float = 600, interval: float = 0.005) -> dict[str, Any]:
        assert self.client is not None
        client = self.client
        return wait_until(lambda: (j := client.get_job(job_id))["state"] in states and j,
                          timeout=timeout, interval=interval, what=f"job {job_id} to reach {sorted(states)}")

    def running_at(self, job_id: int) -> float:
        """When the job's command started, as the supervisor reported it (Unix time)."""
        assert self.client is not None
        for ev in self.client.job_events(job_id)["events"]:
            if ev["to"] == "running":
                return float(ev["time"]) if not isinstance(ev["time"], str) else iso_time(ev["time"])
        raise RuntimeError(f"job {job_id} never ran")


def iso_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _orphans(home: Path) -> list[psutil.Process]:
    """Supervisors (and their jobs) still running from this home after the server stopped."""
    marker = str(home)
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in p.info["cmdline"] or ()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def job_dir(script: str) -> Path:
    """A folder holding ``job.py`` with ``script``, for a job to run in place."""
    d = Path(tempfile.mkdtemp(prefix="modelyard-bench-job-"))
    (d / "job.py").write_text(script)
    return d


METRICS_SCRIPT = """\
import os, sys
n = int(sys.argv[1])
out = sys.stdout.buffer
chunk = 1000
for start in range(0, n, chunk):
    out.write("".join('{"metric": "loss", "value": %r, "step": %d}\\n' % (1.0 / (i + 1), i)
                      for i in range(start, min(n, start + chunk))).encode())
    out.flush()
"""

STREAM_SCRIPT = """\
import sys, time
n, every = int(sys.argv[1]), float(sys.argv[2])
time.sleep(1.0)
for i in range(n):
    print("tick %r" % time.time(), flush=True)
    time.sleep(every)
"""
