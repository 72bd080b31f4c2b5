"""One function per row of the issue's table; each returns that row's result.

A row is ``{"name", "unit", "target", "higher_is_better", "modelyard": summary,
"peers": [{"name", "note", **summary, "ratio"}], "met": bool | None, "notes"}``.
The peers' sizes may be smaller than ours where a full run would take many
minutes (MLflow's ``log_metric`` at ~20 points/s); their rate is then measured
on the smaller count and the row's note says so.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import Side, alternate, ratio, summary
from bench.ours import METRICS_SCRIPT, STARTED, STREAM_SCRIPT, TERMINAL, Server, iso_time, job_dir
from bench.peers import PeerAgent

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Sizes:
    repeat: int
    submit_jobs: int = 20
    throughput_jobs: int = 50
    ingest_points: int = 1_000_000
    mlflow_batch_points: int = 100_000
    mlflow_metric_points: int = 200
    read_points: int = 100_000
    stream_lines: int = 20
    queued_jobs: int = 10_000
    passes: int = 5
    demo_epochs: int | None = 2
    running_jobs: int = 50
    image_jobs: int = 10
    image_loop: int = 10_000_000
    two_node_jobs: int = 5
    mlflow_client_points: int = 100_000
    mlflow_client_calls: int = 1_000


FULL = Sizes(repeat=3)
QUICK = Sizes(repeat=1, submit_jobs=3, throughput_jobs=5, ingest_points=20_000, mlflow_batch_points=2_000,
              mlflow_metric_points=20, read_points=5_000, stream_lines=5, queued_jobs=500, passes=2,
              demo_epochs=None, running_jobs=3, image_jobs=2, image_loop=200_000, two_node_jobs=1,
              mlflow_client_points=2_000, mlflow_client_calls=20)


class Context:
    """What the scenarios share: sizes, the peer agent (None with --no-peers), the run's scratch space."""

    def __init__(self, sizes: Sizes, peers: PeerAgent | None) -> None:
        self.sizes = sizes
        self.peers = peers
        self._ray_up = False
        self.ray_head: dict[str, str] = {}  # the peers' Ray head while up: {"url": dashboard, "address": GCS}

    def ray(self) -> PeerAgent | None:
        if self.peers is not None and not self._ray_up:
            self.ray_head = self.peers.call("ray_start")
            self._ray_up = True
        return self.peers

    def ray_done(self) -> None:
        if self.peers is not None and self._ray_up:
            self.peers.call("ray_stop")
            self._ray_up = False


def row(name: str, unit: str, target: str, ours: Side, peers: list[Side], *, higher_is_better: bool,
        met: Callable[[dict[str, float], list[dict[str, Any]]], bool] | None, notes: str | None = None) -> dict[str, Any]:
    s = summary(ours.samples)
    peer_rows = []
    for side in peers:
        ps = summary(side.samples)
        peer_rows.append({"name": side.label, "note": side.note, **(ps or {}),
                          "ratio": ratio(s, ps, higher_is_better=higher_is_better)})
    measured_peers = [p for p in peer_rows if p.get("ratio") is not None]
    verdict = None
    if s is not None and met is not None:
        verdict = bool(met(s, measured_peers))
    return {"name": name, "unit": unit, "target": target, "higher_is_better": higher_is_better,
            "modelyard": s, "peers": peer_rows, "met": verdict, "notes": notes}


def _peer_ratio_ok(peers: list[dict[str, Any]], at_least: float) -> bool:
    """A ratio target holds when every peer measured in this run is beaten by that much (vacuous with none)."""
    return all(p["ratio"] >= at_least for p in peers[:1])


# -- jobs ---------------------------------------------------------------------

def submit_to_running(ctx: Context, server: Server) -> dict[str, Any]:
    n = ctx.sizes.submit_jobs

    def ours() -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            job_id = server.submit(["true"])
            server.wait_state(job_id, STARTED)
            out.append(time.perf_counter() - t0)
            server.wait_state(job_id, TERMINAL, interval=0.02)
        return out

    server.wait_state(server.submit(["true"]), TERMINAL)  # warm-up, as the peer gets one
    mine = Side("modelyard", ours)
    peers = [Side("ray jobs", lambda: ctx.ray().call("ray_submit_latency", n=n)["samples"])] if ctx.peers else []
    alternate([mine, *peers], ctx.sizes.repeat)
    return row("submit_to_running", "s", "p50 <= 0.100 s and >= 10x faster than Ray Jobs", mine, peers,
               higher_is_better=False,
               met=lambda s, p: s["median"] <= 0.100 and _peer_ratio_ok(p, 10),
               notes=f"{n} trivial jobs (`true`) one after another per repetition; time from the submit call "
                     "until GET /jobs/ID (Ray: get_job_status) first shows running or later, polled every 5 ms")


def throughput(ctx: Context, server: Server) -> dict[str, Any]:
    n = ctx.sizes.throughput_jobs

    def ours() -> float:
        t0 = time.perf_counter()
        ids = [server.submit(["true"]) for _ in range(n)]
        for job_id in ids:
            server.wait_state(job_id, TERMINAL, interval=0.02)
        return n / (time.perf_counter() - t0)

    mine = Side("modelyard", ours)
    peers = [Side("ray jobs", lambda: ctx.ray().call("ray_throughput", n=n)["value"])] if ctx.peers else []
    alternate([mine, *peers], ctx.sizes.repeat)
    return row("throughput_50_jobs", "jobs/s", ">= 10x Ray Jobs", mine, peers, higher_is_better=True,
               met=lambda s, p: _peer_ratio_ok(p, 10) if p else None,  # type: ignore[return-value]
               notes=f"{n} trivial jobs submitted back to back; first submit -> all finished")


# -- metrics ------------------------------------------------------------------

def ingest_job(server: Server, n: int) -> tuple[int, float]:
    """A job printing ``n`` metric lines; (job id, seconds from its command's start until all are stored)."""
    workdir = job_dir(METRICS_SCRIPT)
    job_id = server.submit([sys.executable, "job.py", str(n)], workdir=workdir)
    server.wait_state(job_id, TERMINAL, interval=0.01)
    done = time.time()
    elapsed = done - server.running_at(job_id)
    return job_id, elapsed


def count_points(database: str, job_id: int) -> int:
    if database.startswith("sqlite"):
        with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
            return conn.execute("SELECT coalesce(sum(n), 0) FROM metric_chunks WHERE job_id = ?", (job_id,)).fetchone()[0]
    import psycopg
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT coalesce(sum(n), 0) FROM metric_chunks WHERE job_id = %s", (job_id,)).fetchone()[0]


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    import psycopg
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ingestion(ctx: Context, server: Server, database: str, *, dialect: str) -> tuple[dict[str, Any], int]:
    """The ingestion row; also returns the id of a job holding a full series (for the read scenarios)."""
    sz = ctx.sizes
    last_job = [0]

    def ours() -> float:
        job_id, elapsed = ingest_job(server, sz.ingest_points)
        stored = count_points(database, job_id)
        if stored != sz.ingest_points:
            raise RuntimeError(f"job {job_id}: {stored} points stored, {sz.ingest_points} printed")
        last_job[0] = job_id
        return sz.ingest_points / elapsed

    mine = Side("modelyard", ours)
    peers: list[Side] = []
    if ctx.peers:
        backend = None
        if dialect == "postgresql":
            backend = ctx.pg_mlflow  # type: ignore[attr-defined]
        ctx.peers.call("mlflow_start", backend=backend)
        peers = [
            Side("mlflow log_batch", lambda: ctx.peers.call("mlflow_log_batch", n=sz.mlflow_batch_points)["value"],
                 note=f"{sz.mlflow_batch_points:,} points per repetition, 1,000 per call; rate extrapolates"),
            Side("mlflow log_metric", lambda: ctx.peers.call("mlflow_log_metric", n=sz.mlflow_metric_points)["value"],
                 note=f"{sz.mlflow_metric_points:,} points per repetition, one per call; rate extrapolates"),
        ]
    try:
        alternate([mine, *peers], sz.repeat)
    finally:
        if ctx.peers:
            ctx.peers.call("mlflow_stop")
    floor = 250_000 if dialect == "sqlite" else 150_000
    target = (f">= {floor:,} points/s" + (" and >= 40x MLflow log_batch" if dialect == "sqlite" else ""))
    return row(f"ingest_{dialect}", "points/s", target, mine, peers, higher_is_better=True,
               met=lambda s, p: s["median"] >= floor and (dialect != "sqlite" or _peer_ratio_ok(p, 40)),
               notes=f"one job prints {sz.ingest_points:,} metric lines; from its command's start until the job "
                     "has ended (its final report is stored after every earlier one), counted in the database"), \
        last_job[0]


def read_series(ctx: Context, server: Server) -> dict[str, Any]:
    sz = ctx.sizes
    job_id, _ = ingest_job(server, sz.read_points)

    def read(layout: str) -> float:
        t0 = time.perf_counter()
        series = server.read_metrics(job_id, names="loss", layout=layout)
        elapsed = time.perf_counter() - t0
        got = len(series["loss"]["value"] if layout == "columns" else series["loss"])
        if got != sz.read_points:
            raise RuntimeError(f"read {got} points ({layout}), expected {sz.read_points}")
        return elapsed

    cold = read("columns")  # the series' first read: from the database, not the server's columns cache
    mine = Side("modelyard", lambda: read("columns"))
    rows_layout = Side("modelyard, points layout", lambda: read("points"))
    peers: list[Side] = []
    if ctx.peers:
        ctx.peers.call("mlflow_start")
        run_id = ctx.peers.call("mlflow_seed_history", n=sz.read_points)["run_id"]
        peers = [Side("mlflow get_metric_history",
                      lambda: ctx.peers.call("mlflow_read_history", run_id=run_id, n=sz.read_points)["value"])]
    try:
        alternate([mine, rows_layout, *peers], sz.repeat)
    finally:
        if ctx.peers:
            ctx.peers.call("mlflow_stop")
    r = row("read_100k_series", "s", "<= 0.100 s (>= 50x MLflow)", mine, peers, higher_is_better=False,
            met=lambda s, p: s["median"] <= 0.100 and _peer_ratio_ok(p, 50),
            notes=f"GET /jobs/ID/metrics?names=loss&layout=columns, {sz.read_points:,} points: request, JSON bytes, "
                  f"orjson.loads; its first, cold read took {cold:.3f} s; the same as a list of point objects "
                  "(layout=points) is the points_layout figure. MLflow: MlflowClient.get_metric_history")
    r["cold_s"] = cold
    r["points_layout"] = summary(rows_layout.samples)
    return r


def read_downsampled(ctx: Context, server: Server, job_id: int) -> dict[str, Any]:
    def ours() -> float:
        t0 = time.perf_counter()
        series = server.read_metrics(job_id, names="loss", max_points=2000)
        elapsed = time.perf_counter() - t0
        if not 3 <= len(series["loss"]) <= 2000:
            raise RuntimeError(f"downsampled to {len(series['loss'])} points")
        return elapsed

    cold = ours()  # the series' first chart: read whole from the store
    mine = Side("modelyard", ours)
    alternate([mine], max(3, ctx.sizes.repeat))
    r = row("read_1m_downsampled", "s", "<= 0.050 s", mine, [], higher_is_better=False,
            met=lambda s, p: s["median"] <= 0.050,
            notes=f"GET /jobs/ID/metrics?names=loss&max_points=2000 over a {ctx.sizes.ingest_points:,}-point series, "
                  f"redrawn (the series' columns cached by the server); its first, cold read took {cold:.3f} s")
    r["cold_s"] = cold
    return r


# -- server -------------------------------------------------------------------

def server_start(ctx: Context) -> dict[str, Any]:
    def ours() -> float:
        server = Server()
        try:
            server.start()
            return server.started_in
        finally:
            server.close()

    def mlflow() -> float:
        # stopped again at once: a running MLflow server (and its workers) must not share
        # the cores with our next start
        try:
            return float(ctx.peers.call("mlflow_start")["started_in"])
        finally:
            ctx.peers.call("mlflow_stop")

    mine = Side("modelyard", ours)
    peers = [Side("mlflow server", mlflow)] if ctx.peers else []
    alternate([mine, *peers], ctx.sizes.repeat)
    return row("server_start", "s", "<= 1.5 s", mine, peers, higher_is_better=False,
               met=lambda s, p: s["median"] <= 1.5,
               notes="process spawn with a fresh home (database created and migrated) -> GET /health answers 200")


def live_stream(ctx: Context, server: Server) -> dict[str, Any]:
    n = ctx.sizes.stream_lines
    assert server.client is not None
    client = server.client

    def ours() -> list[float]:
        job_id = server.submit([sys.executable, "-u", "job.py", str(n), "0.1"], workdir=job_dir(STREAM_SCRIPT))
        server.wait_state(job_id, STARTED)
        out = []
        for ev in client.stream_logs(job_id):
            if ev.event == "end":
                break
            text = ev.data.get("text", "")
            if text.startswith("tick "):
                out.append(time.time() - float(text.split()[1]))
        return out

    mine = Side("modelyard", ours)
    alternate([mine], ctx.sizes.repeat)
    return row("log_to_stream", "s", "p50 <= 0.200 s", mine, [], higher_is_better=False,
               met=lambda s, p: s["median"] <= 0.200,
               notes=f"{n} lines, one per 100 ms; the time printed in the line -> the line read from "
                     "GET /jobs/ID/logs/stream (server-sent events)")


# -- scheduler ----------------------------------------------------------------

class _NullExecutor:
    """Starts nothing: the pass is measured, not the launches."""

    name = "local"

    def start(self, launch: Any) -> str:
        return '{"pid": 0, "config": ""}'

    def cancel(self, attempt: Any) -> None:
        pass

    def alive(self, attempt: Any) -> bool | None:
        return None

    def recover(self, attempts: Any) -> list[Any]:
        return []


def scheduling(ctx: Context) -> dict[str, Any]:
    import orjson

    from modelyard.config import Settings
    from modelyard.executors.capacity import Capacity
    from modelyard.jobs import JobSpec, JobState, Resources
    from modelyard.scheduler.launch import LaunchContext
    from modelyard.scheduler.loop import SchedulerLoop
    from modelyard.db.engine import Database
    from modelyard.db.schema import jobs
    from modelyard.db.users import create_user

    n = ctx.sizes.queued_jobs
    home = Path(tempfile.mkdtemp(prefix="modelyard-bench-sched-"))
    db = Database(f"sqlite:///{home}/modelyard.db")
    db.migrate()
    user, _ = create_user(db, "bench")
    spec = orjson.dumps(JobSpec(command=["true"]).model_dump(mode="json")).decode()
    now = time.time()
    rows = [{"user_id": user.id, "name": f"job-{i}", "state": JobState.QUEUED.value, "priority": i % 3,
             "gpus": 0, "cpus": 1.0, "memory": 0, "max_runtime": 3600.0, "spec": spec, "retries_left": 0,
             "attempt": 0, "created_at": now + i * 1e-3, "queued_at": now + i * 1e-3} for i in range(n)]
    with db.write() as conn:
        conn.execute(jobs.insert(), rows)
    settings = Settings.from_env({"MODELYARD_HOME": str(home)})
    capacity = Capacity.one(Resources(gpus=0, cpus=2, memory=8 * 2**30))
    loop = SchedulerLoop(db, _NullExecutor(), capacity, LaunchContext(settings=settings, server_url=None),
                         heartbeat_timeout=1e9)
    loop.tick(now)  # places two jobs: the machine is full for the passes measured

    def ours() -> list[float]:
        out = []
        for _ in range(ctx.sizes.passes):
            t0 = time.perf_counter()
            loop.tick(time.time())
            out.append(time.perf_counter() - t0)
        return out

    mine = Side("modelyard", ours)
    try:
        alternate([mine], ctx.sizes.repeat)
    finally:
        db.dispose()
    return row("scheduling_pass", "s", "<= 0.020 s per pass", mine, [], higher_is_better=False,
               met=lambda s, p: s["median"] <= 0.020,
               notes=f"{n:,} queued jobs, a full machine (2 running); one SchedulerLoop.tick: lost-supervisor "
                     "check, the store reads, the policy (SQLite, in process)")


def _node_world(n_queued: int, *, nodes: int = 100, spare_cpus: int = 0) -> tuple[list[Any], list[Any], Any]:
    """``nodes`` nodes of 8 GPUs, 64 CPUs, 512 GiB (half labelled gpu=h100, half gpu=a100, two zones), every
    GPU held by a running job (one 4-GPU job and four 1-GPU ones a node, every tenth node a rank of a 2-node
    job instead), all but ``spare_cpus`` CPUs of each node held too; and ``n_queued`` queued jobs of mixed
    sizes: 1/2/4/8 GPUs or CPU only, one in ten on 2-8 nodes, one in five asking for a label."""
    from modelyard.executors.capacity import Capacity, GpuInfo, Node
    from modelyard.jobs import Resources
    from modelyard.jobs.nodes import NodeSlice
    from modelyard.scheduler.policy import QueuedJob, RunningJob

    gib = 2**30
    cap = Capacity(tuple(
        Node(f"node-{i:03d}", Resources(gpus=8, cpus=64, memory=512 * gib),
             tuple(GpuInfo(g, "H100" if i % 2 else "A100", None, 80 * gib) for g in range(8)),
             {"gpu": "h100" if i % 2 else "a100", "zone": "ab"[i % 4 // 2]})
        for i in range(nodes)))
    now, running, rid = time.time(), [], 10**6
    per_rank = (64 - spare_cpus) / 8  # CPUs a held GPU comes with
    for i, n in enumerate(cap.nodes):
        if i % 10 == 0 and i + 1 < nodes:  # a 2-node job's ranks on this node and the next one, four GPUs each
            other = cap.nodes[i + 1].id
            running.append(RunningJob(rid, Resources(gpus=4, cpus=4 * per_rank, memory=128 * gib),
                                      (NodeSlice(n.id, (0, 1, 2, 3)), NodeSlice(other, (0, 1, 2, 3))),
                                      now + 600 + 37 * i))
            rid += 1
        elif i % 10 != 1:
            running.append(RunningJob(rid, Resources(gpus=4, cpus=4 * per_rank, memory=128 * gib),
                                      (NodeSlice(n.id, (0, 1, 2, 3)),), now + 900 + 53 * i))
            rid += 1
        for g in range(4, 8):
            running.append(RunningJob(rid, Resources(gpus=1, cpus=per_rank, memory=32 * gib),
                                      (NodeSlice(n.id, (g,)),), now + 300 + 11 * rid % 7200))
            rid += 1
    queued = []
    for i in range(n_queued):
        gpus = (0, 1, 1, 2, 4, 8)[i % 6]
        labels = ({"gpu": "h100"}, {"gpu": "a100", "zone": "a"})[i % 2] if i % 5 == 0 else {}
        queued.append(QueuedJob(i, Resources(gpus=gpus, cpus=max(gpus, 1) * 4, memory=max(gpus, 1) * 16 * gib),
                                priority=i % 3, order=i, max_runtime=600 + i % 7 * 600, user=str(i % 20),
                                nodes=2 + i % 7 if i % 10 == 3 else 1, labels=labels))
    return queued, running, cap


def schedule_nodes(ctx: Context) -> dict[str, Any]:
    """The node-aware policy's pass on a full 100-node cluster (the issue's figure), in process."""
    from modelyard.scheduler.policy import decide

    n = ctx.sizes.queued_jobs
    queued, running, cap = _node_world(n)
    spare_queued, spare_running, spare_cap = _node_world(n, spare_cpus=8)

    from modelyard.scheduler.policy import Quota

    # as the loop passes them: 20 users, each with a fair-share usage and a quota that seldom binds
    users = [str(u) for u in range(20)]
    usage = {u: 1.5 * i for i, u in enumerate(users)}
    quotas = {u: Quota(gpus=64, cpus=512) for u in users}

    def timed(q: list[Any], r: list[Any], c: Any) -> list[float]:
        out = []
        for _ in range(ctx.sizes.passes):
            t0 = time.perf_counter()
            decide(q, r, c, time.time(), quotas=quotas, usage=usage)
            out.append(time.perf_counter() - t0)
        return out

    mine = Side("modelyard", lambda: timed(queued, running, cap))
    spare = Side("modelyard, CPUs left on every node", lambda: timed(spare_queued, spare_running, spare_cap))
    alternate([mine, spare], ctx.sizes.repeat)
    placed = len(decide(spare_queued, spare_running, spare_cap, time.time(), quotas=quotas, usage=usage).placements)
    s = summary(spare.samples) or {"median": 0.0}
    return row("schedule_nodes", "s", "<= 0.050 s per pass", mine, [], higher_is_better=False,
               met=lambda m, p: m["median"] <= 0.050,
               notes=f"{n:,} queued jobs (1/2/4/8 GPUs or CPU only, 10% on 2-8 nodes, 20% with a label), "
                     f"{len(running)} running, 100 nodes x 8 GPUs, 64 CPUs, 512 GiB, every GPU and CPU held; "
                     f"one policy.decide (the pass alone, in process), with 20 users' quotas and fair-share usage. With 8 CPUs left free on every node "
                     f"(CPU-only jobs start, {placed} placed): median {s['median']:.4f} s")


# -- the demo -----------------------------------------------------------------

def demo(ctx: Context, server: Server) -> dict[str, Any]:
    epochs = ctx.sizes.demo_epochs
    if epochs is None:
        return row("digits_demo", "ratio", ">= 0.98", Side("modelyard", lambda: 0.0), [], higher_is_better=True,
                   met=None, notes="skipped in --quick")
    example = ROOT / "examples" / "digits-cnn"
    argv = [sys.executable, "train.py", "--epochs", str(epochs)]
    bare_times: list[float] = []

    def bare() -> float:
        with tempfile.TemporaryDirectory() as out:
            env = {**os.environ, "MODELYARD_OUTPUT_DIR": out, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
            t0 = time.perf_counter()
            subprocess.run(argv, cwd=example, env=env, check=True, stdout=subprocess.DEVNULL)
            bare_times.append(time.perf_counter() - t0)
            return bare_times[-1]

    def ours() -> float:
        job_id = server.submit(argv, workdir=example, cpus=2)
        job = server.wait_state(job_id, TERMINAL, interval=0.05)
        if job["state"] != "succeeded":
            raise RuntimeError(f"the demo job ended {job['state']}: {job.get('message')}")
        a = job["attempts"][-1]
        took = iso_time(a["ended_at"]) - server.running_at(job_id)
        return bare_times[-1] / took

    mine = Side("modelyard", ours)
    alternate([Side("bare", bare), mine], ctx.sizes.repeat)
    return row("digits_demo", "ratio", ">= 0.98", mine, [], higher_is_better=True,
               met=lambda s, p: s["median"] >= 0.98,
               notes=f"examples/digits-cnn/train.py --epochs {epochs} on the CPU: bare wall time / the job's "
                     f"running time under modelyard (bare median {summary(bare_times)['median']:.2f} s)"
               if bare_times else None)


# -- memory -------------------------------------------------------------------

def memory(ctx: Context) -> list[dict[str, Any]]:
    n = ctx.sizes.running_jobs
    idle, loaded, supervisor = Side("modelyard", lambda: 0.0), Side("modelyard", lambda: 0.0), Side("modelyard", lambda: 0.0)
    uss: list[float] = []
    for _ in range(ctx.sizes.repeat):
        with Server() as server:
            assert server.client is not None
            for _ in range(5):
                server.client.list_jobs()
            time.sleep(1.0)
            idle.samples.append(server.rss_mb())
            ids = [server.submit(["sleep", "120"]) for _ in range(n)]
            for job_id in ids:
                server.wait_state(job_id, {"running"}, timeout=300, interval=0.05)
            time.sleep(3.0)  # a few heartbeats and samples with everything up
            loaded.samples.append(server.rss_mb())
            sups = server.supervisors()
            if len(sups) != n:
                raise RuntimeError(f"found {len(sups)} supervisors for {n} running jobs")
            supervisor.samples.append(sorted(p.memory_info().rss / 2**20 for p in sups)[len(sups) // 2])
            # a forked supervisor shares its zygote's pages: RSS counts them, USS only its own
            uss.append(sorted(p.memory_full_info().uss / 2**20 for p in sups)[len(sups) // 2])
            for job_id in ids:
                server.client.stop_job(job_id)
            for job_id in ids:
                server.wait_state(job_id, TERMINAL, timeout=120, interval=0.05)
    return [
        row("rss_server_idle", "MB", "<= 150 MB", idle, [], higher_is_better=False,
            met=lambda s, p: s["median"] <= 150, notes="after start and a few requests"),
        row("rss_server_50_running", "MB", "<= 400 MB", loaded, [], higher_is_better=False,
            met=lambda s, p: s["median"] <= 400, notes=f"{n} jobs running (`sleep 120`), reports flowing"),
        {**row("rss_supervisor", "MB", "<= 60 MB", supervisor, [], higher_is_better=False,
               met=lambda s, p: s["median"] <= 60,
               notes="the median supervisor of those jobs, RSS (counting the pages it shares with the zygote "
                     "it was forked from); uss_mb is its own memory"),
         "uss_mb": summary(uss)},
    ]
