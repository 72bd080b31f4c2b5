"""``ray_submit_to_running``: submit -> running on the Ray executor, against Ray Jobs on the same cluster.

The peers' Ray head (bench/peer_agent.py: ``ray[default]``, with the dashboard
and job agent Ray Jobs needs) takes Ray Jobs' submissions; a second node joins
it from this interpreter's Ray, which has modelyard (an actor's worker is the
raylet's Python), with the custom resource ``modelyard: 1``, and our server
(``MODELYARD_EXECUTOR=ray``) places its jobs there with ``--node-label
modelyard=1``. One cluster, two raylets, both sides' jobs ``true`` with no CPU.
With ``--no-peers`` the cluster is one head of this interpreter's Ray, ours alone.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.harness import Side, alternate, wait_until
from bench.ours import STARTED, TERMINAL, Server, free_port


@contextmanager
def ray_node(address: str | None) -> Iterator[str]:
    """This interpreter's raylet, joined to ``address`` (None: a head of its own), in its own session
    (stopping it ends only it); yields the cluster's address."""
    temp = Path(tempfile.mkdtemp(prefix="ray-node-", dir="/tmp"))  # Ray wants a short path for its sockets
    log = open(temp / "node.log", "ab")
    where = ["--address", address] if address else [
        "--head", "--port", str(port := free_port()), "--include-dashboard", "false", "--temp-dir", str(temp)]
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", *where, "--block", "--num-cpus", "2",
         "--resources", '{"modelyard": 1}', "--object-store-memory", str(200 * 2**20), "--disable-usage-stats"],
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        yield address or f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # --block: ray start then stops the processes it started
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def ray_submit_to_running(ctx: Any) -> dict[str, Any]:
    from bench.scenarios import _peer_ratio_ok, row

    n = ctx.sizes.submit_jobs
    head = ctx.ray_head["address"] if ctx.ray() is not None else None
    with ray_node(head) as address, \
            Server(env={"MODELYARD_EXECUTOR": "ray", "MODELYARD_RAY_ADDRESS": address}) as server:
        def submit() -> int:
            assert server.client is not None
            spec = {"command": ["true"], "resources": {"cpus": 0}, "node_labels": {"modelyard": "1"}}
            return int(server.client.submit_job(spec)["id"])

        def ours() -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                job_id = submit()
                server.wait_state(job_id, STARTED)
                out.append(time.perf_counter() - t0)
                server.wait_state(job_id, TERMINAL, interval=0.02)
            return out

        def joined() -> bool:  # the node may join after the server is up
            nodes = server.http.get("/capacity").json().get("nodes") or []
            return any(n["labels"].get("modelyard") == "1" for n in nodes)

        wait_until(joined, timeout=120, interval=0.2, what="the modelyard node in /capacity")
        server.wait_state(submit(), TERMINAL)  # warm-up, as the peer got one
        mine = Side("modelyard (ray executor)", ours)
        peers = [Side("ray jobs", lambda: ctx.peers.call("ray_submit_latency", n=n)["samples"])] if ctx.peers else []
        alternate([mine, *peers], ctx.sizes.repeat)
    if ctx.peers is not None:
        ctx.ray_done()
    return row("ray_submit_to_running", "s", ">= 10x faster than Ray Jobs on the same cluster", mine, peers,
               higher_is_better=False, met=lambda s, p: _peer_ratio_ok(p, 10),
               notes=f"{n} trivial jobs (`true`, no CPU) one after another per repetition on a two-raylet cluster "
                     "(2 CPUs each); time from the submit call until the job first shows running or later, polled "
                     "every 5 ms. Each side starts a Ray actor per job (ours: the supervisor's; Ray Jobs': its "
                     "JobSupervisor), each a fresh worker process")
