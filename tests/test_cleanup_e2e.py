"""Clean-up end to end: real jobs on a real server (local executor) with MODELYARD_RETENTION=outputs=1s.

- the log is stored once: after a job ends its lines leave the db for the artifact store and its
  run folder goes, while ``modelyard logs`` and the API's line ranges still give every line;
- retention, run by the scheduler loop, removes an ended job's outputs but not its final/;
- ``modelyard rm`` is refused while the job runs, then removes it; ``admin removals`` lists it.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import wait_for
from serverproc import clean_env, cli
from servers import ServerProcess

from modelyard.artifacts.keys import job_prefix, log_archive_key
from modelyard.artifacts.store import ArtifactStore
from modelyard.db.engine import Database
from modelyard.db.schema import attempts, log_lines, removals

PY = sys.executable
LINES = 3000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("cleanup") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G", "MODELYARD_RETENTION": "outputs=1s"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def db(server: ServerProcess) -> Iterator[Database]:
    d = Database(f"sqlite:///{server.home / 'modelyard.db'}")
    yield d
    d.dispose()


def _env(server: ServerProcess) -> dict[str, str]:
    return {**server.env, "MODELYARD_URL": server.url, "MODELYARD_TOKEN": server.token}


def _ended(c: httpx.Client, job_id: int) -> dict[str, Any]:
    return wait_for(lambda: (j := c.get(f"/jobs/{job_id}").json())["state"] in ("succeeded", "failed") and j,
                    timeout=60, what=f"job {job_id} to end")  # type: ignore[return-value]


def _count(db: Database, table: sa.Table, *cond: Any) -> int:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*cond)).scalar_one()


def test_an_ended_jobs_log_is_kept_once_and_reads_whole(server: ServerProcess, db: Database) -> None:
    code = (f"import sys\nfor i in range({LINES}):\n    print(f'line {{i}}', file=sys.stderr if i % 7 == 0 else sys.stdout)\n")
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"command": [PY, "-c", code]}}).json()
        assert _ended(c, job["id"])["state"] == "succeeded"
        with db.read() as conn:
            attempt_id = conn.execute(sa.select(attempts.c.id).where(attempts.c.job_id == job["id"])).scalar_one()
        store = ArtifactStore((server.home / "artifacts").as_uri())
        # the archive is the one copy: the lines leave the db, then the supervisor's log.txt goes
        wait_for(lambda: "attempts/1/log.txt" not in {e.path for e in store.list(job_prefix(job["id"]))},
                 timeout=30, what="the log's archive to replace log.txt")
        assert store.exists(log_archive_key(job["id"], 1))
        assert _count(db, log_lines, log_lines.c.attempt_id == attempt_id) == 0
        assert not list((server.home / "runs").glob(f"{job['id']}-*"))  # removed after its sync
        page = c.get(f"/jobs/{job['id']}/logs", params={"offset": 2800, "limit": 100}).json()
        assert [x["n"] for x in page["lines"]] == list(range(2800, 2900)) and page["next_offset"] == 2900
        whole = c.get(f"/jobs/{job['id']}/logs", params={"limit": 10000}).json()
        assert whole["done"] and [x["n"] for x in whole["lines"]] == list(range(LINES))
        stderr = {x["text"] for x in whole["lines"] if x["stream"] == "stderr"}
        assert stderr == {f"line {i}" for i in range(0, LINES, 7)}  # each line's stream kept
    out = cli(["logs", str(job["id"])], _env(server))
    assert out.returncode == 0, out.stderr
    printed = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("line ")]  # stderr lines to stderr
    assert sorted(printed, key=lambda s: int(s.split()[1])) == [f"line {i}" for i in range(LINES)]


def test_retention_by_the_scheduler_removes_outputs_but_not_final(server: ServerProcess, db: Database) -> None:
    code = ("import os\nd = os.environ['MODELYARD_OUTPUT_DIR']\nopen(os.path.join(d, 'ckpt.bin'), 'wb').write(b'c' * 4096)\n"
            "os.makedirs(os.path.join(d, 'final'), exist_ok=True)\nopen(os.path.join(d, 'final', 'model.bin'), 'wb').write(b'm')\n")
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"command": [PY, "-c", code]}}).json()
        assert _ended(c, job["id"])["state"] == "succeeded"

        def removed() -> Any:
            with db.read() as conn:
                return conn.execute(sa.select(removals).where(removals.c.job_id == job["id"],
                                                              removals.c.reason == "retention")).first()

        row = wait_for(removed, timeout=30, what="retention to remove the job's outputs")
        assert row.what == "outputs" and row.bytes == 4096 and row.actor is None  # type: ignore[union-attr]
        store = ArtifactStore((server.home / "artifacts").as_uri())
        left = [e.path for e in store.list(job_prefix(job["id"])) if "/log" not in e.path and not e.path.startswith("log")]
        assert left and all("final/model.bin" in p for p in left), left
    out = cli(["admin", "removals", "--reason", "retention", "--json"], _env(server))
    assert out.returncode == 0 and any(r["job_id"] == job["id"] for r in json.loads(out.stdout)["removals"])


def test_rm_is_refused_while_running_then_removes_the_job(server: ServerProcess, tmp_path: Path) -> None:
    go = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\nprint('done')\n"
    env = _env(server)
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"command": [PY, "-c", code]}}).json()
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] == "running", timeout=60, what="the job to run")
        refused = cli(["rm", str(job["id"])], env)
        assert refused.returncode != 0 and "running: stop it first" in refused.stderr, refused.stderr
        go.write_text("")
        _ended(c, job["id"])
        done = cli(["rm", str(job["id"])], env)
        assert done.returncode == 0 and f"job {job['id']} removed" in done.stderr + done.stdout, done.stderr
        assert c.get(f"/jobs/{job['id']}").status_code == 404
    listed = cli(["admin", "removals", "--reason", "rm"], env)
    assert listed.returncode == 0 and "job" in listed.stdout
    gone = cli(["rm", "999999"], env)
    assert gone.returncode != 0 and "999999" in gone.stderr


def test_a_bad_retention_stops_the_server_at_start_naming_it(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path / "home"), "MODELYARD_RETENTION": "outputs=soon"}
    done = cli(["server", "--port", "0"], env, timeout=60)
    assert done.returncode != 0 and "MODELYARD_RETENTION: outputs: not a duration: 'soon'" in done.stderr, done.stderr


def test_a_job_submitted_after_a_removal_starts_at_once(server: ServerProcess) -> None:
    """SQLite gives a removed job's event ids to the next events; the queue view must not miss them
    (before: the next job waited for the queue's minute-long resync)."""
    with server.client() as c:
        first = c.post("/jobs", json={"spec": {"command": ["true"]}}).json()
        assert _ended(c, first["id"])["state"] == "succeeded"
        assert c.delete(f"/jobs/{first['id']}").status_code == 200
        job = c.post("/jobs", json={"spec": {"command": ["true"]}}).json()
        # well inside the queue view's 60 s resync (scheduler/loop.py QueueView.RESYNC_EVERY)
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] != "queued", timeout=15,
                 what="the job submitted after a removal to leave the queue")
