"""The Ray scenarios: modelyard's Ray executor against Ray Jobs on the same cluster.

Both rows run on one rig (``ray_rig``): two raylets of this interpreter's Ray (which has modelyard: an
actor's worker is the raylet's Python), each with the custom resource ``modelyard: 1``, and one server
(``MODELYARD_EXECUTOR=ray``) that places its jobs there with ``--node-label modelyard=1``. With the
peers, both raylets join the peers' Ray head (bench/peer_agent.py: ``ray[default]``, with the
dashboard and job agent Ray Jobs needs), which takes Ray Jobs' submissions; with ``--no-peers`` the
first raylet is a head of ours. A run pays for the raylets and the server's Ray driver once.

``ray_submit_to_running``: submit -> running of a one-node job; both sides' jobs ``true`` with no CPU.

``ray_two_node_start``: a ``--nodes 2`` job from submit until both node ranks run, one on each raylet;
the peer's two ranks are placed on the same two nodes.
"""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import Side, alternate, summary, wait_until
from bench.ours import STARTED, TERMINAL, Server, free_port, iso_time


@dataclass
class RayNode:
    address: str  # the cluster's
    proc: subprocess.Popen[bytes]  # its ray start --block
    log: Path

    def started(self) -> bool:
        self.check()
        return b"Ray runtime started." in self.log.read_bytes()

    def check(self) -> None:
        """A node whose ray start gave up (a join that timed out) fails the scenario now, with its log."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"ray start exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")


@contextmanager
def ray_node(address: str | None, env: dict[str, str] | None = None) -> Iterator[RayNode]:
    """This interpreter's raylet, joined to ``address`` (None: a head of its own), in its own session
    (stopping it ends only it). ``env``: added to the raylet's environment, which its workers (our
    supervisors' actors) inherit."""
    temp = Path(tempfile.mkdtemp(prefix="ray-node-", dir="/tmp"))  # Ray wants a short path for its sockets
    log = open(temp / "node.log", "ab")
    where = ["--address", address] if address else [
        "--head", "--port", str(port := free_port()), "--include-dashboard", "false", "--temp-dir", str(temp)]
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", *where, "--block", "--num-cpus", "2",
         "--resources", '{"modelyard": 1}', "--object-store-memory", str(200 * 2**20), "--disable-usage-stats"],
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        node = RayNode(address or f"127.0.0.1:{port}", proc, temp / "node.log")
        # ray start forks the GCS and raylet and says so once they answer: a server started before
        # then finds its head's port closed and (rightly) refuses to start
        wait_until(node.started, timeout=120, interval=0.1, what=f"ray start (log {node.log})")
        yield node
    finally:
        stop_ray_start(proc)
        log.close()


def stop_ray_start(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to ``ray start --block`` alone: it drains its node through the GCS, then stops what it
    started. Not to its whole session: a GCS ended alongside leaves the drain waiting 30 s for it."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of its session outlived it
    except ProcessLookupError:
        pass
    proc.wait()


@dataclass
class RayRig:
    """Two raylets of this interpreter's Ray, each with ``modelyard: 1`` (joined to the peers' head, or
    the first is the head with --no-peers), and one server whose Ray executor places jobs on them:
    both Ray rows run on it, so the run pays for its raylets and the server's driver once."""
    first: RayNode
    second: RayNode
    server: Server
    ranks: "RankRows"
    node_home: Path  # the nodes' run folders, not ~/.modelyard

    def joined(self) -> bool:
        for node in (self.first, self.second):
            node.check()
        seen = self.server.http.get("/capacity").json().get("nodes") or []
        return sum(n["labels"].get("modelyard") == "1" for n in seen) == 2


@contextmanager
def ray_rig(ctx: Any) -> Iterator[RayRig]:
    head = ctx.ray_head["address"] if ctx.ray() is not None else None
    node_home = Path(tempfile.mkdtemp(prefix="modelyard-bench-nodes-"))
    node_env = {"MODELYARD_HOME": str(node_home)}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, node_home, ignore_errors=True)  # last, once the nodes have stopped
        first = stack.enter_context(ray_node(head, node_env))
        server = stack.enter_context(
            Server(env={"MODELYARD_EXECUTOR": "ray", "MODELYARD_RAY_ADDRESS": first.address}))
        ranks = RankRows(server.home)
        stack.callback(ranks.close)

        def first_joined() -> bool:  # a node may join after the server is up
            first.check()
            seen = server.http.get("/capacity").json().get("nodes") or []
            return any(n["labels"].get("modelyard") == "1" for n in seen)

        wait_until(first_joined, timeout=120, interval=0.2, what="the first modelyard node in /capacity")
        # the second joins once the first has: two raylets starting at once on a busy machine can miss
        # the registration deadline (30 s)
        second = stack.enter_context(ray_node(first.address, node_env))
        rig = RayRig(first, second, server, ranks, node_home)
        wait_until(rig.joined, timeout=120, interval=0.2, what="both modelyard nodes in /capacity")
        yield rig


def ray_submit_to_running(ctx: Any, rig: RayRig | None = None) -> dict[str, Any]:
    from bench.scenarios import _peer_ratio_ok, row

    n = ctx.sizes.submit_jobs
    with ExitStack() as stack:
        rig = rig or stack.enter_context(ray_rig(ctx))
        server = rig.server

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

        server.wait_state(submit(), TERMINAL)  # warm-up, as the peer got one
        mine = Side("modelyard (ray executor)", ours)
        peers = [Side("ray jobs", lambda: ctx.peers.call("ray_submit_latency", n=n)["samples"])] if ctx.peers else []
        alternate([mine, *peers], ctx.sizes.repeat)
    return row("ray_submit_to_running", "s", ">= 10x faster than Ray Jobs on the same cluster", mine, peers,
               higher_is_better=False, met=lambda s, p: _peer_ratio_ok(p, 10),
               notes=f"{n} trivial jobs (`true`, no CPU) one after another per repetition on two raylets of ours "
                     "(2 CPUs each; with the peers, joined to their head), the cluster the two-node row uses; time from the submit call until the job first shows running or later, polled "
                     "every 5 ms. Each side starts a Ray actor per job (ours: the supervisor's; Ray Jobs': its "
                     "JobSupervisor), each a fresh worker process")


TWO_NODE_COMMAND = ["sleep", "60"]  # still running when both ranks are seen, then stopped (untimed)


class RankRows:
    """The server's own view of a job's node ranks past 0 (``attempt_ranks``), read from its SQLite file:
    the API shows the job's state, which is rank 0's; read-only, beside the server's writes (WAL)."""

    def __init__(self, home: Path) -> None:
        self.conn = sqlite3.connect(f"file:{home / 'modelyard.db'}?mode=ro", uri=True, timeout=5,
                                    check_same_thread=False)

    def all_started(self, job_id: int, nnodes: int) -> bool:
        rows = self.conn.execute(
            "SELECT r.state FROM attempt_ranks r JOIN attempts a ON a.id = r.attempt_id WHERE a.job_id = ? "
            "AND a.number = (SELECT max(number) FROM attempts WHERE job_id = ?)", (job_id, job_id)).fetchall()
        self.conn.commit()  # ends the read transaction: the next poll sees the server's newer writes
        return len(rows) == nnodes - 1 and all(state != "starting" for (state,) in rows)

    def close(self) -> None:
        self.conn.close()


def ray_two_node_start(ctx: Any, rig: RayRig | None = None) -> dict[str, Any]:
    from bench.scenarios import _peer_ratio_ok, row

    n = ctx.sizes.two_node_jobs
    # the split of our start, per job: submit -> placed (the attempt row), -> both actors up (each actor writes
    # its supervisor's config once Ray started its worker and the executor called start), -> both ranks running
    placed: list[float] = []
    actors_up: list[float] = []
    peer_driver: list[float] = []
    with ExitStack() as stack:
        rig = rig or stack.enter_context(ray_rig(ctx))
        server, ranks, node_home = rig.server, rig.ranks, rig.node_home
        assert server.client is not None
        client = server.client

        def submit() -> int:
            spec = {"command": TWO_NODE_COMMAND, "resources": {"cpus": 0}, "nodes": 2,
                    "node_labels": {"modelyard": "1"}}
            return int(client.submit_job(spec)["id"])

        def both_running(job_id: int) -> bool:
            job = client.get_job(job_id)
            if job["state"] in TERMINAL:
                raise RuntimeError(f"two-node job {job_id} ended {job['state']} before both ranks ran: "
                                   f"{job.get('message')}")
            return job["state"] in STARTED and ranks.all_started(job_id, 2)

        def one(timed: bool) -> float:
            wall0, t0 = time.time(), time.perf_counter()
            job_id = submit()
            wait_until(lambda: both_running(job_id), timeout=300, what=f"both ranks of job {job_id} running")
            took = time.perf_counter() - t0
            if timed:
                attempt = client.get_job(job_id)["attempts"][-1]
                configs = list(node_home.glob(f"runs/{job_id}-{attempt['number']}*/supervisor.json"))
                if len(configs) != 2:
                    raise RuntimeError(f"job {job_id}: {len(configs)} supervisor configs on the nodes, not 2")
                placed.append(iso_time(attempt["created_at"]) - wall0)
                actors_up.append(max(c.stat().st_mtime for c in configs) - wall0)
            client.stop_job(job_id)
            server.wait_state(job_id, TERMINAL, interval=0.02)
            return took

        def peer() -> list[float]:
            got = ctx.peers.call("ray_two_node_latency", n=n, resources={"modelyard": 0.001})
            peer_driver.extend(got["driver"])
            return got["samples"]

        one(timed=False)  # warm-up, as the peer gets one
        mine = Side("modelyard (ray executor)", lambda: [one(timed=True) for _ in range(n)])
        peers = [Side("ray jobs, STRICT_SPREAD group of 2", peer)] if ctx.peers else []
        if ctx.peers:
            ctx.peers.call("ray_two_node_latency", n=1, resources={"modelyard": 0.001})
        alternate([mine, *peers], ctx.sizes.repeat)
    r = row("ray_two_node_start", "s", ">= 10x faster than Ray Jobs on the same cluster", mine, peers,
            higher_is_better=False, met=lambda s, p: _peer_ratio_ok(p, 10),
            notes=f"{n} `--nodes 2` jobs (`{' '.join(TWO_NODE_COMMAND)}`, no CPU, label modelyard=1) one after "
                  "another per repetition on two raylets of 2 CPUs each; time from the submit call until the job "
                  "shows running (rank 0) and the server's attempt_ranks row of rank 1 is running, polled every "
                  "5 ms; then stopped, untimed. Ray Jobs: a job whose entrypoint reserves a STRICT_SPREAD "
                  "placement group of 2 bundles on the same two nodes and starts one actor per bundle; from "
                  "submit_job until both actors' constructors have run (each writes a file), polled every 5 ms")
    r["split"] = {
        "placed": summary(placed),
        "actors_up": summary(actors_up),
        "supervisors": summary([both - up for both, up in zip(mine.samples, actors_up)]),
    }
    if peer_driver:
        r["peer_split"] = {"driver_up": summary(peer_driver)}
    return r
