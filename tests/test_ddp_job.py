"""Several processes on one machine (``--nodes 1 --nproc-per-node 2``): a plain torchrun
data-parallel training (gloo, CPU) as a real job through a real server, and the variables
every command gets. The training script is examples/ddp/train.py, which the two-node Ray
test runs with ``--nodes 2 --nproc-per-node 1``."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers import ServerProcess
from test_e2e_jobs import submit, tar_gz, wait_state

TRAIN = Path(__file__).resolve().parent.parent / "examples" / "ddp" / "train.py"
TORCHRUN = Path(sys.executable).parent / "torchrun"
VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "NNODES", "LOCAL_WORLD_SIZE",
             "MODELYARD_NODE_RANK", "MODELYARD_NNODES", "RANK", "LOCAL_RANK")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("ddp") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=8G"}).start()
    yield srv
    srv.stop()


def lines(c: httpx.Client, job_id: int, **params: object) -> list[dict]:
    return c.get(f"/jobs/{job_id}/logs", params={"limit": 10000, **params}).json()["lines"]


def test_a_torchrun_job_of_two_processes_trains_to_identical_weights(server: ServerProcess) -> None:
    with server.client() as c:
        snap = c.post("/snapshots", content=tar_gz({"train.py": TRAIN.read_bytes()}))
        assert snap.status_code == 201, snap.text
        command = (f"{TORCHRUN} --nnodes $NNODES --node-rank $NODE_RANK --nproc-per-node $LOCAL_WORLD_SIZE "
                   "--master-addr $MASTER_ADDR --master-port $MASTER_PORT train.py --steps 30")
        r = c.post("/jobs", json={"spec": {"command": command, "nodes": 1, "nproc_per_node": 2,
                                           "resources": {"cpus": 2}}, "snapshot": snap.json()["key"]})
        assert r.status_code == 201, r.text
        job = wait_state(c, r.json()["id"], "succeeded", "failed", timeout=180)
        texts = [line["text"] for line in lines(c, job["id"])]
        assert job["state"] == "succeeded", (job["message"], texts[-30:])
        done = sorted(t for t in texts if "weights sha256" in t)
        assert [t.split(" (")[0] for t in done] == ["rank 0 of 2", "rank 1 of 2"]  # both processes logged
        assert len({t.rsplit(" ", 1)[1] for t in done}) == 1
        files = {f["path"] for f in c.get(f"/jobs/{job['id']}/outputs").json()["files"]}
        assert {"weights-rank0.json", "weights-rank1.json", "weights-all.json", "checkpoint.pt"} <= files
        hashes = [c.get(f"/jobs/{job['id']}/outputs/weights-rank{r}.json").json()["sha256"] for r in (0, 1)]
        assert hashes[0] == hashes[1] == done[0].rsplit(" ", 1)[1]
        assert c.get(f"/jobs/{job['id']}/outputs/weights-all.json").json() == {"world_size": 2, "sha256": hashes}
        loss = c.get(f"/jobs/{job['id']}/metrics", params={"names": "loss"}).json()["loss"]
        assert [p["step"] for p in loss] == list(range(1, 31))  # rank 0's metric lines are metric points
        assert all(line["node"] == 0 for line in lines(c, job["id"]))  # one node: every line is node rank 0's


def test_every_command_gets_the_rendezvous_variables_and_ours_win(server: ServerProcess) -> None:
    show = "import json, os; print(json.dumps({k: os.environ.get(k) for k in %r}))" % (VARIABLES,)
    with server.client() as c:
        job = submit(c, [sys.executable, "-c", show], env={"MASTER_PORT": "1", "WORLD_SIZE": "99"})
        job = wait_state(c, job["id"], "succeeded", "failed", timeout=60)
        assert job["state"] == "succeeded", job["message"]
        env = json.loads(next(t["text"] for t in lines(c, job["id"]) if t["text"].startswith("{")))
        port = int(env.pop("MASTER_PORT"))
        assert 1024 < port < 65536  # a free port the supervisor picked, not the job's own "1"
        assert env == {"MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "1", "NODE_RANK": "0", "NNODES": "1",
                       "LOCAL_WORLD_SIZE": "1", "MODELYARD_NODE_RANK": "0", "MODELYARD_NNODES": "1",
                       "RANK": "0", "LOCAL_RANK": "0"}
        page = c.get(f"/jobs/{job['id']}/logs", params={"node": 0}).json()
        assert page["nodes"] == 1 and page["done"] and page["lines"]
        assert c.get(f"/jobs/{job['id']}/logs", params={"node": 1}).json()["lines"] == []
