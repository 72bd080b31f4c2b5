"""The peers' side of the bench, run by the peers' own interpreter (bench/.peers-venv).

It imports only MLflow, Ray and the standard library. It reads one JSON request
per line on stdin and answers one JSON line on stdout, so servers and clients
stay up across repetitions and their imports are not timed. Requests:

    {"op": "ray_start"} -> {"url": dashboard, "address": GCS} / {"op": "ray_stop"}
    {"op": "ray_submit_latency", "n": 20}     -> {"samples": [seconds, ...]}
    {"op": "ray_throughput", "n": 50}         -> {"value": jobs per second}
    {"op": "ray_two_node_latency", "n": 5, "resources": {...}} -> {"samples": [seconds, ...], "driver": [...]}
    {"op": "mlflow_start", "backend": URI}    -> {"url": ..., "started_in": seconds}
    {"op": "mlflow_stop"}
    {"op": "mlflow_log_batch", "n": N}        -> {"value": points per second}
    {"op": "mlflow_log_metric", "n": N}       -> {"value": points per second}
    {"op": "mlflow_seed_history", "n": N}     -> {"run_id": ...}
    {"op": "mlflow_read_history", "run_id": R, "n": N} -> {"value": seconds}
    {"op": "fml_start"} -> {"url": ..., "started_in": seconds} / {"op": "fml_stop"}
    {"op": "client_log", "url": U, "token": T, "n": N, "names": K, "per_call": false}
                                              -> {"run_id": ..., "value": seconds, "http": seconds}
    {"op": "client_read", "url": U, "token": T, "run_id": R, "n": N, "names": K}
                                              -> {"value": seconds, "http": seconds}
    {"op": "client_version"}                  -> {"mlflow": version}
    {"op": "client_reset"}                    -> {} (forget the clients: a new server may reuse a port)

The ``client_*`` ops are one MLflow client against any tracking server (ours, ``mlflow server``,
FastTrackML's ``fml server``); they import nothing but MLflow, so the bench also runs them under
its own interpreter (mlflow-skinny, the same version) when the peers are not installed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

BIN = Path(sys.executable).parent
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
STARTED = TERMINAL | {"RUNNING"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def wait_until(pred, timeout: float, interval: float = 0.005, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


class Agent:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
        self.ray_client = None
        self.mlflow_proc: subprocess.Popen | None = None
        self.mlflow = None
        self.fml_proc: subprocess.Popen | None = None
        self.clients: dict[str, tuple] = {}  # tracking URL -> (MlflowClient, experiment id)

    # -- Ray Jobs -------------------------------------------------------------

    def ray_start(self) -> dict:
        """A head of our own: ``ray start --block`` in its own session and temp dir, so that stopping it
        ends only what it started (``ray stop`` would end every Ray on the machine, other people's too)."""
        port, gcs_port = free_port(), free_port()
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray wants a short path for its sockets
        self.ray_proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", str(gcs_port),
             "--dashboard-port", str(port), "--include-dashboard", "true", "--temp-dir", str(temp),
             "--object-store-memory", str(200 * 2**20), "--disable-usage-stats"],
            env=env, stdout=open(self.tmp / "ray.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        from ray.job_submission import JobSubmissionClient
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(f"{url}/api/version"), 300, 0.2, "Ray dashboard")
        self.ray_client = JobSubmissionClient(url)
        deadline = time.monotonic() + 300
        while True:  # warm-up: the first job pays Ray's worker start-up; the job agent may come up late
            try:
                self.ray_submit_latency(1)
                break
            except RuntimeError as e:  # "No available agent to submit job, please try again later."
                if "try again" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        return {"url": url, "address": f"127.0.0.1:{gcs_port}"}  # the GCS, for nodes to join (bench/raycluster.py)

    def ray_stop(self) -> dict:
        proc = getattr(self, "ray_proc", None)
        if proc is not None and proc.poll() is None:
            # SIGTERM to `ray start --block` alone: it drains the node through the GCS, then stops what it
            # started (to its whole session, the GCS would end too and the drain wait 30 s for it)
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
        self.ray_proc = None
        self.ray_client = None
        return {}

    def _ray_status(self, sid: str) -> str:
        return str(self.ray_client.get_job_status(sid).value)

    def ray_submit_latency(self, n: int) -> dict:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            sid = self.ray_client.submit_job(entrypoint="true")
            wait_until(lambda: self._ray_status(sid) in STARTED, 120, 0.005, "Ray job running")
            samples.append(time.perf_counter() - t0)
            wait_until(lambda: self._ray_status(sid) in TERMINAL, 120, 0.02, "Ray job end")
        return {"samples": samples}

    def ray_throughput(self, n: int) -> dict:
        t0 = time.perf_counter()
        ids = [self.ray_client.submit_job(entrypoint="true") for _ in range(n)]
        pending = set(ids)
        while pending:
            pending = {s for s in pending if self._ray_status(s) not in TERMINAL}
            if pending:
                time.sleep(0.02)
        return {"value": n / (time.perf_counter() - t0)}

    def ray_two_node_latency(self, n: int, resources: dict) -> dict:
        """Ray's nearest equivalent of a two-node job's start: one Ray job whose driver reserves a
        STRICT_SPREAD placement group of two bundles (on the nodes holding ``resources``) and starts one
        actor per bundle, as our executor does inside its server. Two separate Ray jobs would not be
        reserved together, so the group is the fair peer. Timed from submit_job until both actors'
        constructors have run (each writes a file); ``driver``: until the entrypoint's ray.init returned."""
        script = self.tmp / "two_node.py"
        script.write_text(TWO_NODE_SCRIPT)
        samples, driver = [], []
        for i in range(n):
            marks = Path(tempfile.mkdtemp(dir=self.tmp))
            entrypoint = f"{sys.executable} {script} {marks} '{json.dumps(resources)}'"
            wall0, t0 = time.time(), time.perf_counter()
            sid = self.ray_client.submit_job(entrypoint=entrypoint)

            def both() -> bool:
                if len(os.listdir(marks)) >= 3:  # driver, rank-0, rank-1
                    return True
                if os.path.exists(marks / "driver") and self._ray_status(sid) in TERMINAL:
                    raise RuntimeError(f"Ray job {sid} ended before both ranks ran: "
                                       f"{self.ray_client.get_job_logs(sid)[-2000:]}")
                return False
            wait_until(both, 300, 0.005, "both ranks of the Ray job")
            samples.append(time.perf_counter() - t0)
            driver.append((marks / "driver").stat().st_mtime - wall0)
            (marks / "done").touch()  # the driver exits, its actors and group go with it
            wait_until(lambda: self._ray_status(sid) in TERMINAL, 120, 0.02, "Ray job end")
            if self._ray_status(sid) != "SUCCEEDED":
                raise RuntimeError(f"Ray job {sid}: {self.ray_client.get_job_logs(sid)[-2000:]}")
        return {"samples": samples, "driver": driver}

    # -- MLflow ---------------------------------------------------------------

    def mlflow_start(self, backend: str | None = None) -> dict:
        self.mlflow_stop()
        home = Path(tempfile.mkdtemp(dir=self.tmp))
        backend = backend or f"sqlite:///{home}/mlflow.db"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        self.mlflow_proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", backend, "--host", "127.0.0.1",
             "--port", str(port), "--default-artifact-root", str(home / "artifacts")],
            stdout=open(home / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True, cwd=home)
        wait_until(lambda: healthy(f"{url}/health"), 300, 0.01, f"mlflow server ({home}/server.log)")
        started_in = time.perf_counter() - t0
        from mlflow import MlflowClient
        self.mlflow = MlflowClient(tracking_uri=url)
        self.experiment = self.mlflow.create_experiment(f"bench-{port}")
        self.mlflow_log_batch(1000)  # warm-up: the first requests pay the server's lazy imports
        return {"url": url, "started_in": started_in}

    def mlflow_stop(self) -> dict:
        if self.mlflow_proc is not None and self.mlflow_proc.poll() is None:
            os.killpg(self.mlflow_proc.pid, signal.SIGTERM)
            try:
                self.mlflow_proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.mlflow_proc.pid, signal.SIGKILL)
        self.mlflow_proc = None
        return {}

    def _new_run(self) -> str:
        return self.mlflow.create_run(self.experiment).info.run_id

    def _log_batches(self, run_id: str, n: int) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        for start in range(0, n, 1000):
            batch = [Metric("loss", 1.0 / (i + 1), now, i) for i in range(start, min(n, start + 1000))]
            self.mlflow.log_batch(run_id, metrics=batch)

    def mlflow_log_batch(self, n: int) -> dict:
        run_id = self._new_run()
        t0 = time.perf_counter()
        self._log_batches(run_id, n)
        return {"value": n / (time.perf_counter() - t0)}

    def mlflow_log_metric(self, n: int) -> dict:
        run_id = self._new_run()
        t0 = time.perf_counter()
        for i in range(n):
            self.mlflow.log_metric(run_id, "loss", 1.0 / (i + 1), step=i)
        return {"value": n / (time.perf_counter() - t0)}

    def mlflow_seed_history(self, n: int) -> dict:
        run_id = self._new_run()
        self._log_batches(run_id, n)
        return {"run_id": run_id}

    def mlflow_read_history(self, run_id: str, n: int) -> dict:
        t0 = time.perf_counter()
        points = self.mlflow.get_metric_history(run_id, "loss")
        elapsed = time.perf_counter() - t0
        if len(points) != n:
            raise RuntimeError(f"MLflow returned {len(points)} points, expected {n}")
        return {"value": elapsed}

    # -- FastTrackML -----------------------------------------------------------

    def fml_start(self) -> dict:
        """FastTrackML's own server (the Go binary its wheel installs) on a fresh SQLite database."""
        self.fml_stop()
        home = Path(tempfile.mkdtemp(dir=self.tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        self.fml_proc = subprocess.Popen(
            [str(BIN / "fml"), "server", "--listen-address", f"127.0.0.1:{port}",
             "--database-uri", f"sqlite://{home}/fasttrackml.db", "--default-artifact-root", str(home / "artifacts")],
            stdout=open(home / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True, cwd=home)
        wait_until(lambda: not self._fml_died(home) and healthy(f"{url}/health"),
                   300, 0.01, f"fml server ({home}/server.log)")
        return {"url": url, "started_in": time.perf_counter() - t0}

    def _fml_died(self, home: Path) -> bool:
        if self.fml_proc is not None and self.fml_proc.poll() is not None:
            raise RuntimeError(f"fml server exited: {(home / 'server.log').read_text()[-2000:]}")
        return False

    def fml_stop(self) -> dict:
        if self.fml_proc is not None and self.fml_proc.poll() is None:
            os.killpg(self.fml_proc.pid, signal.SIGTERM)
            try:
                self.fml_proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.fml_proc.pid, signal.SIGKILL)
        self.fml_proc = None
        return {}

    # -- one MLflow client, any tracking server ---------------------------------

    def client_version(self) -> dict:
        import mlflow
        return {"mlflow": mlflow.__version__}

    def client_reset(self) -> dict:
        self.clients.clear()
        return {}

    http_s = 0.0  # wall time inside the client's HTTP exchanges (request out -> whole reply in)

    @classmethod
    def _time_http(cls) -> None:
        """Split the client's time: what it spends waiting on the server (and the wire) against its own
        work (protobuf, JSON), which is the same whichever server it talks to."""
        import requests
        if getattr(requests.Session.send, "_bench", False):
            return
        send = requests.Session.send

        def timed(session, request, **kwargs):
            t0 = time.perf_counter()
            try:
                return send(session, request, **kwargs)  # reads the whole body unless stream=True
            finally:
                cls.http_s += time.perf_counter() - t0
        timed._bench = True
        requests.Session.send = timed

    def _client(self, url: str, token: str | None):
        # the client reads its token from the environment on every request (MLflow's documented way)
        if token:
            os.environ["MLFLOW_TRACKING_TOKEN"] = token
        else:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        if url not in self.clients:
            self._time_http()
            from mlflow import MlflowClient
            client = MlflowClient(tracking_uri=url)
            self.clients[url] = (client, client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}"))
        return self.clients[url]

    @staticmethod
    def _points(n: int, names: int) -> list[tuple[str, float, int, int]]:
        """A training loop's points: ``names`` series stepped together, (name, value, timestamp ms, step)."""
        base = 1_700_000_000_000
        return [(f"m{i % names}", 1.0 / (i + 1), base + i // names, i // names) for i in range(n)]

    def client_log(self, url: str, token: str | None, n: int, names: int, per_call: bool = False) -> dict:
        """A fresh run gets ``n`` points: log_batch calls of 1,000 (MLflow's limit per call, as autolog
        and async logging send them), or one log_metric call per point. Timed from the first call to the
        last answer; the Metric objects are built before."""
        from mlflow.entities import Metric
        client, experiment = self._client(url, token)
        run_id = client.create_run(experiment).info.run_id
        points = self._points(n, names)
        http0 = Agent.http_s
        if per_call:
            t0 = time.perf_counter()
            for name, value, ts, step in points:
                client.log_metric(run_id, name, value, timestamp=ts, step=step)
        else:
            batches = [[Metric(name, value, ts, step) for name, value, ts, step in points[i:i + 1000]]
                       for i in range(0, n, 1000)]
            t0 = time.perf_counter()
            for batch in batches:
                client.log_batch(run_id, metrics=batch)
        return {"run_id": run_id, "value": time.perf_counter() - t0, "http": Agent.http_s - http0}

    def client_read(self, url: str, token: str | None, run_id: str, n: int, names: int) -> dict:
        """Every series of the run back with get_metric_history (as many pages as the server makes), then
        checked point by point against what was logged: step, value, and timestamp."""
        client, _ = self._client(url, token)
        http0 = Agent.http_s
        t0 = time.perf_counter()
        got = {f"m{k}": client.get_metric_history(run_id, f"m{k}") for k in range(min(names, n))}
        elapsed = time.perf_counter() - t0
        http = Agent.http_s - http0
        want: dict[str, list] = {}
        for name, value, ts, step in self._points(n, names):
            want.setdefault(name, []).append((step, value, ts))
        for name, points in want.items():
            have = sorted((m.step, m.value, m.timestamp) for m in got[name])
            if have != points:
                bad = next((f"{w} logged, {h} read" for w, h in zip(points, have) if w != h),
                           f"{len(points)} points logged, {len(have)} read")
                raise RuntimeError(f"{url}: series {name} of run {run_id} came back different: {bad}")
        return {"value": elapsed, "http": http}

    def close(self) -> None:
        self.fml_stop()
        self.mlflow_stop()
        if self.ray_client is not None:
            self.ray_stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# The two-node peer's entrypoint: argv[1] the folder to mark, argv[2] the resources each bundle holds.
TWO_NODE_SCRIPT = """\
import json, os, sys, time
import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

marks, resources = sys.argv[1], json.loads(sys.argv[2])
ray.init()
open(os.path.join(marks, "driver"), "w").close()
group = placement_group([{"CPU": 0.001, **resources}] * 2, strategy="STRICT_SPREAD")
ray.get(group.ready())


@ray.remote
class Rank:
    def __init__(self, rank, marks):
        open(os.path.join(marks, "rank-%d" % rank), "w").close()

    def ready(self):
        return True


ranks = [Rank.options(num_cpus=0.001, resources=resources, scheduling_strategy=PlacementGroupSchedulingStrategy(
    group, placement_group_bundle_index=i)).remote(i, marks) for i in range(2)]
ray.get([r.ready.remote() for r in ranks])
while not os.path.exists(os.path.join(marks, "done")):  # held until timed, as our job is until stopped
    time.sleep(0.01)
"""


def main() -> None:
    # Replies go to the original stdout; anything MLflow or Ray prints goes to stderr.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    agent = Agent()
    try:
        for line in sys.stdin:
            req = json.loads(line)
            op = req.pop("op")
            try:
                reply = getattr(agent, op)(**req)
            except Exception as e:  # the agent's loop boundary: the bench decides what a failure means
                reply = {"error": f"{type(e).__name__}: {e}"}
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    finally:
        agent.close()


if __name__ == "__main__":
    main()
