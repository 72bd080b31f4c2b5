"""Two real supervisors, node ranks 0 and 1 of one attempt, against a real server: the whole
job ends together. Without Ray: the attempt is placed on two (named) nodes of this machine by
hand and each rank's supervisor started as an executor would (``python -m modelyard.supervisor
CONFIG``), so these run wherever the suite runs; the Ray executor's tests do the same on a cluster.

The job asks for more GPUs than the server has, so its own scheduler never places it: the
placement here is the only one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import kill_tree, wait_for
from serverproc import clean_env, cli
from servers import ServerProcess
from modelyard.config import Settings
from modelyard.jobs import JobSpec, Resources
from modelyard.jobs.nodes import NodeSlice
from modelyard.scheduler.launch import LaunchContext, build_launch
from modelyard.artifacts.store import ArtifactStore
from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import users as U

PY = sys.executable
# rank 0 and rank 1 do what MODE_<rank> says: "ok" prints and exits 0, "fail" exits 3, "wait" runs until ended.
# An "ok" rank 0 first waits for rank 1 to have printed, as torchrun's ranks meet at a final barrier: rank 0's
# success ends the attempt, and a rank 1 whose command had not printed yet would be stopped before it did.
JOB = """
import os, pathlib, sys, time
rank = os.environ["NODE_RANK"]
mode = os.environ["MODE_" + rank]
print(f"rank {rank} of {os.environ['NNODES']} on {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}", flush=True)
barrier = pathlib.Path(os.environ["BARRIER"])
(barrier / f"printed-{rank}").touch()
deadline = time.monotonic() + 30
while rank == "0" and mode == "ok" and not (barrier / "printed-1").exists() and time.monotonic() < deadline:
    time.sleep(0.02)
if mode == "fail":
    print(f"rank {rank} fails", file=sys.stderr, flush=True)
    sys.exit(3)
while mode == "wait":
    time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("ranks") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G", "MODELYARD_STOP_GRACE": "2"}).start()
    yield srv
    srv.stop()


class TwoRanks:
    """A two-node attempt placed by hand, and its two supervisor processes."""

    def __init__(self, server: ServerProcess, tmp: Path, modes: tuple[str, str]) -> None:
        self.settings = Settings.from_env({"MODELYARD_HOME": str(server.home)})
        self.db = Database(self.settings.database_url)
        with server.client() as c:
            me = c.get("/me").json()["name"]
        user = U.get_user_by_name(self.db, me)
        assert user is not None
        script = tmp / "job.py"
        script.write_text(JOB)
        barrier = tmp / "barrier"
        barrier.mkdir()
        spec = JobSpec(command=[PY, str(script)], nodes=2, resources=Resources(gpus=8), workdir=str(tmp),
                       env={"MODE_0": modes[0], "MODE_1": modes[1], "BARRIER": str(barrier)})
        self.job = J.create_job(self.db, user=user, spec=spec, snapshot_key=None)
        token = f"ranks-{self.job.id}-{os.getpid()}"
        placed = J.place(self.db, self.job.id, token=token, executor="by-hand",
                         slices=[NodeSlice("node-a"), NodeSlice("node-b")])
        assert placed is not None
        self.attempt = placed[1]
        ctx = LaunchContext(settings=self.settings, server_url=server.url, heartbeat_interval=0.3)
        self.launch = build_launch(ctx, placed[0], self.attempt, token)
        self.procs: list[subprocess.Popen[bytes]] = []
        for spec_r in self.launch.specs:
            spec_r.run_dir.mkdir(parents=True)
            config = spec_r.run_dir / "supervisor.json"
            config.write_text(spec_r.model_dump_json())
            self.procs.append(subprocess.Popen([PY, "-m", "modelyard.supervisor", str(config)],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def wait_ended(self, timeout: float = 60) -> list[int]:
        """Both supervisors' exit codes, once both are gone, and no command of theirs is left."""
        wait_for(lambda: all(p.poll() is not None for p in self.procs), timeout=timeout,
                 what="both supervisors to end")
        marker = str(self.launch.spec.argv[1])
        assert not [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
        return [p.returncode for p in self.procs]

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                kill_tree(p.pid)
        self.db.dispose()


@pytest.fixture
def two_ranks(server: ServerProcess, tmp_path: Path) -> Iterator[callable]:
    made: list[TwoRanks] = []

    def make(*modes: str) -> TwoRanks:
        made.append(TwoRanks(server, tmp_path, modes))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for t in made:
        t.close()


def job_of(c: httpx.Client, job_id: int, *states: str) -> dict:
    return wait_for(lambda: (j := c.get(f"/jobs/{job_id}").json())["state"] in states and j,
                    timeout=60, what=f"job {job_id} to be {states}")  # type: ignore[return-value]


def texts(c: httpx.Client, job_id: int, **params: object) -> list[tuple[int, str]]:
    page = c.get(f"/jobs/{job_id}/logs", params={"limit": 10000, **params}).json()
    return [(line["node"], line["text"]) for line in page["lines"]]


def test_both_ranks_log_into_one_attempt_and_it_succeeds(server: ServerProcess, two_ranks) -> None:  # type: ignore[no-untyped-def]
    ranks = two_ranks("ok", "ok")
    with server.client() as c:
        job = job_of(c, ranks.job.id, "succeeded", "failed", "lost")
        assert ranks.wait_ended() == [0, 0]
        assert job["state"] == "succeeded", job["message"]
        every = texts(c, job["id"])
        assert any(n == 0 and t.startswith("rank 0 of 2 on 127.0.0.1:") for n, t in every)
        assert any(n == 1 and t.startswith("rank 1 of 2 on 127.0.0.1:") for n, t in every)
        only_1 = texts(c, job["id"], node=1)
        assert only_1 and {n for n, _ in only_1} == {1} and any(t.startswith("rank 1 of 2") for _, t in only_1)
    env = clean_env(server.home, MODELYARD_URL=server.url, MODELYARD_TOKEN=server.token)
    shown = cli(["logs", str(job["id"])], env)
    assert shown.returncode == 0, shown.stderr
    assert "[node 0] rank 0 of 2 on 127.0.0.1:" in shown.stdout and "[node 1] rank 1 of 2" in shown.stdout
    one = cli(["logs", str(job["id"]), "--node", "1"], env)
    assert one.stdout.startswith("rank 1 of 2") and "rank 0" not in one.stdout and "[node" not in one.stdout
    followed = cli(["logs", "-f", str(job["id"]), "--node", "1"], env)
    assert followed.returncode == 0 and followed.stdout == one.stdout
    store = ArtifactStore(ranks.settings.storage_url)
    base = f"jobs/{job['id']}/attempts/1"
    # once every rank has ended the log is kept once: one archive of both ranks' lines, the raw copies gone
    wait_for(lambda: not store.exists(f"{base}/log-node1.txt") and not store.exists(f"{base}/log.txt"), 30,
             what="the two-node log's archive to replace its raw copies")
    assert store.exists(f"{base}/log.idx")
    archived = [json.loads(line) for line in store.read_bytes(f"{base}/log.jsonl").splitlines()]
    assert any(node == 1 and text.startswith("rank 1 of 2") for _n, _t, _s, node, text in archived)


def test_rank_1_failing_fails_the_job_naming_it_and_ends_rank_0(server: ServerProcess, two_ranks) -> None:  # type: ignore[no-untyped-def]
    ranks = two_ranks("wait", "fail")
    with server.client() as c:
        job = job_of(c, ranks.job.id, "succeeded", "failed", "lost", "stopped")
        assert job["state"] == "failed"
        assert job["message"].startswith("node rank 1 (node node-b): the command exited with code 3")
        assert "rank 1 fails" in job["message"]  # the failing rank's last lines
        ranks.wait_ended(timeout=30)  # rank 0, told the attempt is over, ended its command at once
        assert (1, "rank 1 fails") in texts(c, job["id"])


def test_a_stop_reaches_every_rank(server: ServerProcess, two_ranks) -> None:  # type: ignore[no-untyped-def]
    ranks = two_ranks("wait", "wait")
    with server.client() as c:
        wait_for(lambda: {n for n, _ in texts(c, ranks.job.id)} == {0, 1}, timeout=60, what="both ranks to start")
        assert c.post(f"/jobs/{ranks.job.id}/stop").status_code == 200
        job = job_of(c, ranks.job.id, "stopped", "failed", "lost", "succeeded")
        assert job["state"] == "stopped"
        ranks.wait_ended(timeout=30)
        assert {n for n, t in texts(c, job["id"]) if t.startswith("[modelyard] stop requested")} == {0, 1}
