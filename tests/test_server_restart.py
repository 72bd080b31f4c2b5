"""The server dies mid-job (SIGKILL) and comes back: nothing is lost, nothing is counted twice."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from conftest import wait_for
from servers import ServerProcess

N = 3000
# prints half its lines, waits for the test to kill the server, prints the rest into the void
JOB = (
    "import json, os, sys, time\n"
    f"for i in range({N}):\n"
    f"    if i == {N // 2}:\n"
    "        sys.stdout.flush()\n"
    "        while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
    "    print(json.dumps({'metric': 'loss', 'value': i / 10, 'step': i}))\n"
    "    print(f'line {i}')\n"
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_job_then_restart_keeps_every_point_once(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    env = {"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G"}
    if backend == "postgresql":
        env["MODELYARD_DATABASE_URL"] = request.getfixturevalue("pg_url")
    home = tmp_path / "home"
    srv = ServerProcess(home, env=env).start()
    c = srv.client()
    release = tmp_path / "release"
    job = c.post("/jobs", json={"spec": {"command": [sys.executable, "-c", JOB, str(release)]}}).json()

    def lines() -> int:
        return len(c.get(f"/jobs/{job['id']}/logs", params={"limit": 10000}).json()["lines"])

    wait_for(lambda: lines() == N // 2, 30, what="the job to be half-way")
    srv.kill(signal.SIGKILL)
    c.close()
    release.touch()
    # the supervisor keeps running and buffering while no server answers
    restarted = ServerProcess(home, env=env, port=srv.port).start()
    try:
        with restarted.client() as c2:
            wait_for(lambda: c2.get(f"/jobs/{job['id']}").json()["state"] == "succeeded", 90, what="the job to finish")
            got = c2.get(f"/jobs/{job['id']}/logs", params={"limit": 10000}).json()["lines"]
            assert [l["text"] for l in got] == [f"line {i}" for i in range(N)]
            assert [l["n"] for l in got] == list(range(N))
            points = c2.get(f"/jobs/{job['id']}/metrics").json()["loss"]
            assert [p["step"] for p in points] == list(range(N))
            assert [p["value"] for p in points] == [i / 10 for i in range(N)]
            assert c2.get(f"/jobs/{job['id']}").json()["attempt"] == 1  # re-adopted, not retried
    finally:
        restarted.stop()
