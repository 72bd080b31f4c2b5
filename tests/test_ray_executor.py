"""The Ray executor on a real two-raylet cluster, with the store on PostgreSQL and artifacts on S3 (moto).

One cluster and one server (a real process, MODELYARD_EXECUTOR=ray) for the
module: a head, a GPU node (2 declared GPUs, resource gpu_h100), and nodes
added and killed by the tests. Supervisors run as detached actors on the
nodes, with their own run folders under the nodes' MODELYARD_HOME.
"""
from __future__ import annotations

import json
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa

from conftest import PG_ADMIN_URL, wait_for
from raycluster import RayCluster, ray_cluster
from servers import ServerProcess, free_port, reap_supervisors
from serverproc import cli
from test_e2e_jobs import all_logs, submit, tar_gz, wait_state

from modelyard.db import jobs as store_jobs
from modelyard.db.engine import Database

PY = sys.executable
TRAIN = Path(__file__).resolve().parent.parent / "examples" / "ddp" / "train.py"
TORCHRUN = Path(PY).parent / "torchrun"
HEARTBEAT_TIMEOUT = 10  # short, so a node death shows soon; room for a supervisor to start on a busy machine


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    name = f"modelyard_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def s3(s3_server: str) -> dict[str, str]:
    bucket = f"modelyard-{uuid.uuid4().hex[:10]}"
    _s3_client(s3_server).create_bucket(Bucket=bucket)
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": s3_server, "AWS_ENDPOINT_URL_S3": s3_server, "BUCKET": bucket}


def _s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray-nodes")


@pytest.fixture(scope="module")
def cluster(s3: dict[str, str], node_home: Path) -> Iterator[RayCluster]:
    # what every raylet, and so every supervisor, sees: the S3 endpoint and its own home
    env = {k: v for k, v in s3.items() if k.startswith("AWS_")}
    with ray_cluster({**env, "MODELYARD_HOME": str(node_home)}) as c:
        yield c
    reap_supervisors(node_home)  # a failed test's; none is expected (test_no_process_is_left_behind)


class Server:
    """The module's server process, restarted in place by the restart test (same port, same URL)."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env, self.port = home, env, free_port()
        self.proc = ServerProcess(home, env=env, port=self.port).start(timeout=60)

    def restart(self) -> None:
        self.proc = ServerProcess(self.home, env=self.env, port=self.port).start(timeout=60)

    def client(self) -> httpx.Client:
        return self.proc.client()


@pytest.fixture(scope="module")
def server(cluster: RayCluster, database: str, s3: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {k: v for k, v in s3.items() if k.startswith("AWS_")}
    env.update(MODELYARD_EXECUTOR="ray", MODELYARD_RAY_ADDRESS=cluster.address, MODELYARD_DATABASE_URL=database,
               MODELYARD_STORAGE_URL=f"s3://{s3['BUCKET']}/yard", MODELYARD_STOP_GRACE="2",
               MODELYARD_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT))
    srv = Server(tmp_path_factory.mktemp("ray-server") / "home", env)
    yield srv
    srv.proc.kill(signal.SIGTERM)


def slices(database: str, job_id: int) -> list[tuple[str, ...]]:
    """Each attempt's nodes, as the store recorded the placement."""
    db = Database(database)
    try:
        return [tuple(s.node for s in a.slices) for a in store_jobs.job_attempts(db, job_id)]
    finally:
        db.dispose()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# Waits (bounded) until both GPU jobs run, so they hold their GPUs at the same time.
GPU_JOB = b"""import json, os, sys, time
from pathlib import Path
meet = Path(sys.argv[1])
(meet / os.environ["MODELYARD_JOB_ID"]).write_text(os.environ["CUDA_VISIBLE_DEVICES"])
deadline = time.time() + 60
while len(list(meet.iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.05)
print("cuda=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
for step in range(5):
    print(json.dumps({"metric": "loss", "value": 1.0 / (step + 1), "step": step}))
Path(os.environ["MODELYARD_OUTPUT_DIR"], "model.bin").write_bytes(b"weights-" + os.environ["MODELYARD_JOB_ID"].encode())
"""


def test_gpu_jobs_run_on_the_gpu_node_with_rays_gpus_and_outputs_in_s3(
        server: Server, cluster: RayCluster, database: str, s3: dict[str, str], tmp_path: Path) -> None:
    meet = tmp_path / "meet"
    meet.mkdir()
    with server.client() as c:
        key = c.post("/snapshots", content=tar_gz({"train.py": GPU_JOB})).json()["key"]
        spec = {"command": [PY, "train.py", str(meet)], "resources": {"gpus": 1, "cpus": 0.5}}
        gpu_jobs = [c.post("/jobs", json={"spec": spec, "snapshot": key}).json() for _ in range(2)]
        labelled = submit(c, [PY, "-c", "import os; print('labelled', os.environ['CUDA_VISIBLE_DEVICES'] or '-')"],
                          resources={"cpus": 0.5}, node_labels={"gpu_h100": "1"})
        for job in [*gpu_jobs, labelled]:
            wait_state(c, job["id"], "succeeded", timeout=90)
        seen = []
        for job in gpu_jobs:
            texts = [line["text"] for line in all_logs(c, job["id"])]
            cuda = next(t for t in texts if t.startswith("cuda="))
            seen.append(cuda)
            points = c.get(f"/jobs/{job['id']}/metrics").json()["loss"]
            assert [p["step"] for p in points] == list(range(5))
            assert c.get(f"/jobs/{job['id']}/outputs/model.bin").content == f"weights-{job['id']}".encode()
            assert slices(database, job["id"]) == [(cluster.gpu_node_id,)]
        # the GPUs Ray assigned the two actors, one each, never the same one
        assert sorted(seen) == ["cuda=0", "cuda=1"]
        assert [line["text"] for line in all_logs(c, labelled["id"])] == ["labelled -"]
        assert slices(database, labelled["id"]) == [(cluster.gpu_node_id,)]
    def keys() -> set[str]:
        return {o["Key"] for o in _s3_client(s3["AWS_ENDPOINT_URL"]).list_objects_v2(Bucket=s3["BUCKET"])["Contents"]}

    for job in gpu_jobs:
        assert f"yard/jobs/{job['id']}/attempts/1/outputs/model.bin" in keys()
        # an ended attempt's log is kept once in S3: the server's archive, the supervisor's log.txt gone
        base = f"yard/jobs/{job['id']}/attempts/1"
        wait_for(lambda base=base: f"{base}/log.txt" not in (k := keys()) and f"{base}/log.idx" in k, 30,
                 what="the log archive to replace log.txt")


def test_a_two_node_job_reserves_both_nodes_together_and_meets_at_rank_0(
        server: Server, cluster: RayCluster, database: str) -> None:
    code = ("import os; print('rank', os.environ['NODE_RANK'], os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'],"
            " os.environ['WORLD_SIZE'], flush=True)")
    with server.client() as c:
        job = submit(c, [PY, "-c", code], resources={"cpus": 0.5}, nodes=2)
        wait_state(c, job["id"], "succeeded", timeout=90)
        (nodes,) = slices(database, job["id"])
        assert len(set(nodes)) == 2  # one placement group, STRICT_SPREAD: two distinct nodes
        rank0 = next(line["text"] for line in all_logs(c, job["id"]) if line["text"].startswith("rank 0"))
        _, _, addr, port, world = rank0.split()
        assert addr == next(n["address"] for n in c.get("/capacity").json()["nodes"] if n["id"] == nodes[0])
        assert 0 < int(port) < 65536 and world == "2"


def logs_done(c: httpx.Client, job_id: int, attempt: int | None = None) -> None:
    """Until the log says it is whole: rank 1's last lines may come after rank 0 ended the attempt."""
    params = {"attempt": attempt} if attempt else {}
    wait_for(lambda: c.get(f"/jobs/{job_id}/logs", params={**params, "limit": 10000}).json()["done"], 30,
             what="the log to be done")


def cli_env(server: Server) -> dict[str, str]:
    return {**server.proc.env, "MODELYARD_URL": server.proc.url, "MODELYARD_TOKEN": server.proc.token}


def test_a_two_node_torchrun_training_ends_with_identical_weights_on_both_and_its_checkpoint_in_s3(
        server: Server, cluster: RayCluster, database: str, s3: dict[str, str], tmp_path: Path) -> None:
    command = (f"{TORCHRUN} --nnodes $NNODES --node-rank $NODE_RANK --nproc-per-node $LOCAL_WORLD_SIZE "
               "--master-addr $MASTER_ADDR --master-port $MASTER_PORT train.py --steps 20")
    with server.client() as c:
        key = c.post("/snapshots", content=tar_gz({"train.py": TRAIN.read_bytes()})).json()["key"]
        r = c.post("/jobs", json={"spec": {"command": command, "nodes": 2, "nproc_per_node": 1,
                                           "resources": {"cpus": 1}}, "snapshot": key})
        assert r.status_code == 201, r.text
        job = wait_state(c, r.json()["id"], "succeeded", "failed", timeout=180)
        assert job["state"] == "succeeded", (job["message"], [line["text"] for line in all_logs(c, job["id"])][-30:])
        logs_done(c, job["id"])
    (nodes,) = slices(database, job["id"])
    assert len(set(nodes)) == 2
    env = cli_env(server)
    logged = {}
    for rank in (0, 1):  # each node rank's own log, as a user reads it
        # --json: torchrun's own stderr lines (rank 1's agent may log a traceback as rank 0's, the
        # rendezvous store's host, ends first) would go to stderr, which cli() checks for tracebacks
        done = cli(["logs", str(job["id"]), "--node", str(rank), "--json"], env)
        assert done.returncode == 0, done.stderr
        lines = json.loads(done.stdout)["lines"]
        assert {line["node"] for line in lines} == {rank}
        (line,) = [t["text"] for t in lines if "weights sha256" in t["text"]]
        assert line.startswith(f"rank {rank} of 2 (node rank {rank})"), line
        logged[rank] = line.rsplit(" ", 1)[1]
    out = tmp_path / "out"
    done = cli(["download", str(job["id"]), "--to", str(out)], env)
    assert done.returncode == 0, done.stderr
    # rank 0 gathered every rank's hash across the two nodes: DDP kept the weights identical
    every = json.loads((out / "weights-all.json").read_text())
    assert every == {"world_size": 2, "sha256": [logged[0], logged[1]]} and logged[0] == logged[1]
    assert not (out / "weights-rank1.json").exists()  # rank 1's node's outputs stay there; only rank 0's are kept
    checkpoint = _s3_client(s3["AWS_ENDPOINT_URL"]).get_object(
        Bucket=s3["BUCKET"], Key=f"yard/jobs/{job['id']}/attempts/1/outputs/checkpoint.pt")["Body"].read()
    assert checkpoint[:2] == b"PK" and checkpoint == (out / "checkpoint.pt").read_bytes()  # torch.save's zip


def test_capacity_follows_nodes_joining_and_leaving(server: Server, cluster: RayCluster) -> None:
    def nodes(c: httpx.Client) -> list[dict]:
        return c.get("/capacity").json()["nodes"]

    with server.client() as c:
        before = nodes(c)
        assert {n["id"] for n in before} >= {cluster.gpu_node_id}
        gpu = next(n for n in before if n["id"] == cluster.gpu_node_id)
        assert gpu["labels"] == {"gpu_h100": "1"} and gpu["total"]["gpus"] == 2
        assert [g["name"] for g in gpu["gpus"]] == ["declared by Ray"] * 2
        extra = cluster.add_node(num_cpus=1, resources={"zone_c": 1}, labels={"zone": "c"})
        joined = wait_for(lambda: next((n for n in nodes(c) if n["id"] == extra.node_id), None), 30,
                          what="the new node in /capacity")
        assert joined["labels"] == {"zone": "c", "zone_c": "1"} and joined["total"]["cpus"] == 1  # type: ignore[index]
        assert c.get("/capacity").json()["total"]["cpus"] == sum(n["total"]["cpus"] for n in before) + 1
        cluster.kill_node(extra)
        wait_for(lambda: all(n["id"] != extra.node_id for n in nodes(c)), 30, what="the node to leave /capacity")


def test_stop_ends_the_command_on_its_node(server: Server, cluster: RayCluster) -> None:
    code = "import os, time; print('pids', os.getpid(), os.getppid(), flush=True); time.sleep(300)"
    with server.client() as c:
        job = submit(c, [PY, "-c", code], resources={"gpus": 1, "cpus": 0.5})
        line = wait_for(lambda: next((l["text"] for l in all_logs(c, job["id"]) if l["text"].startswith("pids")), None),
                        60, what="the job to run")
        command, supervisor = (int(x) for x in str(line).split()[1:])
        done = cli(["stop", str(job["id"])], {**server.proc.env, "MODELYARD_URL": server.proc.url,
                                              "MODELYARD_TOKEN": server.proc.token})
        assert done.returncode == 0, done.stderr
        wait_state(c, job["id"], "stopped", timeout=30)
        wait_for(lambda: gone(command) and gone(supervisor), 30, what="the command and its supervisor to end")


N = 3000
# prints half its lines, waits for the test to kill the server, prints the rest while no server answers
HALFWAY = (
    "import json, os, sys, time\n"
    f"for i in range({N}):\n"
    f"    if i == {N // 2}:\n"
    "        sys.stdout.flush()\n"
    "        while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
    "    print(json.dumps({'metric': 'loss', 'value': i / 10, 'step': i}))\n"
    "    print(f'line {i}')\n"
)


def test_server_killed_mid_job_and_restarted_finds_its_actor_and_loses_nothing(server: Server, tmp_path: Path) -> None:
    release = tmp_path / "release"
    with server.client() as c:
        job = submit(c, [PY, "-c", HALFWAY, str(release)], resources={"cpus": 0.5})
        wait_for(lambda: len(all_logs(c, job["id"])) == N // 2, 60, what="the job to be half-way")
    server.proc.kill(signal.SIGKILL)
    release.touch()
    server.restart()  # same port: the supervisor's reports reach it again at the same URL
    with server.client() as c:
        wait_state(c, job["id"], "succeeded", timeout=90)
        got = all_logs(c, job["id"])
        assert [line["text"] for line in got] == [f"line {i}" for i in range(N)]
        points = c.get(f"/jobs/{job['id']}/metrics").json()["loss"]
        assert [p["step"] for p in points] == list(range(N))
        assert c.get(f"/jobs/{job['id']}").json()["attempt"] == 1  # found again by name, not retried
    assert "supervisor is found again" in server.proc.log_text()


def test_server_killed_mid_two_node_job_and_restarted_keeps_both_ranks_logs_whole(server: Server, tmp_path: Path) -> None:
    release, half = tmp_path / "release", 500
    code = ("import os, sys, time\n"
            f"for i in range({2 * half}):\n"
            f"    if i == {half}:\n"
            "        sys.stdout.flush()\n"
            "        while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
            "    print('line', os.environ['NODE_RANK'], i)\n")
    with server.client() as c:
        job = submit(c, [PY, "-c", code, str(release)], resources={"cpus": 0.5}, nodes=2)

        def halfway() -> bool:
            return all(len(c.get(f"/jobs/{job['id']}/logs", params={"node": r, "limit": 10000}).json()["lines"])
                       == half for r in (0, 1))

        wait_for(halfway, 60, what="both ranks to be half-way")
    server.proc.kill(signal.SIGKILL)
    release.touch()  # both ranks print the rest while no server answers
    server.restart()
    with server.client() as c:
        wait_state(c, job["id"], "succeeded", timeout=90)
        logs_done(c, job["id"])
        for rank in (0, 1):
            got = c.get(f"/jobs/{job['id']}/logs", params={"node": rank, "limit": 10000}).json()["lines"]
            assert [line["text"] for line in got] == [f"line {rank} {i}" for i in range(2 * half)]
        assert c.get(f"/jobs/{job['id']}").json()["attempt"] == 1


def test_node_death_loses_the_attempt_and_the_retry_runs_elsewhere(
        server: Server, cluster: RayCluster, database: str) -> None:
    # 3 CPUs: only the node added here can hold it, and after it dies only the next one
    doomed = cluster.add_node(num_cpus=4)
    code = ("import os, time; print('pids', os.getpid(), os.getppid(), os.environ['MODELYARD_ATTEMPT'], flush=True);"
            "time.sleep(0 if os.environ['MODELYARD_ATTEMPT'] == '2' else 300)")
    with server.client() as c:
        wait_for(lambda: any(n["id"] == doomed.node_id for n in c.get("/capacity").json()["nodes"]), 30,
                 what="the node in /capacity")
        job = submit(c, [PY, "-c", code], resources={"cpus": 3}, retries=1)
        line = wait_for(lambda: next((l["text"] for l in all_logs(c, job["id"]) if l["text"].startswith("pids")), None),
                        60, what="the job to run")
        command, supervisor = (int(x) for x in str(line).split()[1:3])
        assert slices(database, job["id"]) == [(doomed.node_id,)]
        cluster.kill_node(doomed)
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["attempts"][0]["state"] == "lost",
                 HEARTBEAT_TIMEOUT + 10, what="the attempt to be lost")
        first = c.get(f"/jobs/{job['id']}").json()["attempts"][0]
        assert first["reason"] == "supervisor_lost", first
        # nothing of the dead node's attempt runs on: its supervisor saw its actor go and killed the command
        wait_for(lambda: gone(command) and gone(supervisor), 15, what="the dead node's command and supervisor to end")
        assert c.get(f"/jobs/{job['id']}").json()["state"] == "queued"  # no node can hold it now
        spare = cluster.add_node(num_cpus=4)
        wait_state(c, job["id"], "succeeded", timeout=90)
        assert c.get(f"/jobs/{job['id']}").json()["attempt"] == 2
        assert slices(database, job["id"]) == [(doomed.node_id,), (spare.node_id,)]


# each node rank prints its command's and supervisor's pids, then waits (attempt 1) or ends (attempt 2)
RANK_PIDS = ("import os, time; print('pids', os.environ['NODE_RANK'], os.getpid(), os.getppid(), flush=True);"
             "time.sleep(0 if os.environ['MODELYARD_ATTEMPT'] == '2' else 300)")


def rank_pids(c: httpx.Client, job_id: int, nnodes: int = 2) -> dict[int, tuple[int, int]]:
    """Node rank -> (command pid, supervisor pid), once every rank has printed them."""
    def found() -> dict[int, tuple[int, int]] | None:
        got = {}
        for rank in range(nnodes):
            page = c.get(f"/jobs/{job_id}/logs", params={"node": rank, "limit": 100}).json()["lines"]
            line = next((l["text"] for l in page if l["text"].startswith("pids")), None)
            if line is None:
                return None
            _, r, command, supervisor = line.split()
            assert int(r) == rank
            got[rank] = (int(command), int(supervisor))
        return got

    return wait_for(found, 60, what="every node rank to run")  # type: ignore[return-value]


def all_gone(pids: dict[int, tuple[int, int]]) -> bool:
    return all(gone(p) for pair in pids.values() for p in pair)


def test_stopping_a_two_node_job_ends_its_processes_on_both_nodes(server: Server, cluster: RayCluster) -> None:
    with server.client() as c:
        job = submit(c, [PY, "-c", RANK_PIDS], resources={"cpus": 0.5}, nodes=2)
        pids = rank_pids(c, job["id"])
        done = cli(["stop", str(job["id"])], cli_env(server))
        assert done.returncode == 0, done.stderr
        wait_state(c, job["id"], "stopped", timeout=30)
        wait_for(lambda: all_gone(pids), 30, what="both ranks' commands and supervisors to end")


def test_a_node_dying_mid_two_node_job_ends_every_rank_and_the_retry_runs_on_two_nodes_again(
        server: Server, cluster: RayCluster, database: str) -> None:
    # the label keeps the job on the nodes added here: two now, a third once one died
    added = {n.node_id: n for n in (cluster.add_node(num_cpus=1, labels={"ddp": "1"}) for _ in range(2))}
    with server.client() as c:
        wait_for(lambda: sum(n["labels"].get("ddp") == "1" for n in c.get("/capacity").json()["nodes"]) == 2, 30,
                 what="the two nodes in /capacity")
        job = submit(c, [PY, "-c", RANK_PIDS], resources={"cpus": 1}, nodes=2, retries=1, node_labels={"ddp": "1"})
        pids = rank_pids(c, job["id"])
        ((rank0, rank1),) = slices(database, job["id"])
        assert {rank0, rank1} == set(added)
        cluster.kill_node(added[rank1])
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["attempts"][0]["state"] == "lost",
                 HEARTBEAT_TIMEOUT + 10, what="the attempt to be lost")
        # the dead node's supervisor saw its actor go; the live node's was killed by the server, command and all
        wait_for(lambda: all_gone(pids), 15, what="both ranks' commands and supervisors to end")
        assert c.get(f"/jobs/{job['id']}").json()["state"] == "queued"  # one labelled node is not enough
        spare = cluster.add_node(num_cpus=1, labels={"ddp": "1"})
        wait_state(c, job["id"], "succeeded", timeout=90)
        assert c.get(f"/jobs/{job['id']}").json()["attempt"] == 2
        logs_done(c, job["id"], attempt=2)
        assert [set(s) for s in slices(database, job["id"])] == [set(added), {rank0, spare.node_id}]
        assert sorted(l["node"] for l in all_logs(c, job["id"], attempt=2) if l["text"].startswith("pids")) == [0, 1]


def test_no_process_is_left_behind(server: Server, node_home: Path) -> None:
    """Every supervisor the module started ends (its actor with it), the last one just after its final report."""
    def left() -> list[int]:
        return [p.pid for p in psutil.process_iter(["cmdline"]) if "modelyard.supervisor" in (p.info["cmdline"] or [])
                and any(str(node_home) in a for a in p.info["cmdline"])]

    wait_for(lambda: not left(), 30, what="no supervisor left on the nodes")
