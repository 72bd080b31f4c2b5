"""An --image job whose supervisor is stopped with SIGSTOP: declared lost, its container (which
outlives the runtime's client) is killed and removed before the retry is placed, so two
attempts of a job never run at once, in containers as in bare processes."""
from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from images import python_image, remove_containers_under
from servers import ServerProcess
from test_container_jobs import containers

JOB = """
import os, time
if os.environ["MODELYARD_ATTEMPT"] == "1":
    print("first", flush=True)
    while True:
        time.sleep(0.05)
print("second", flush=True)
time.sleep(2)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    python_image()  # before the server starts: it inherits CONTAINERS_CONF
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_CAPACITY": "cpus=2,memory=4G",
                                                "MODELYARD_HEARTBEAT_TIMEOUT": "3"}).start()
    yield srv
    srv.stop()
    remove_containers_under(srv.home)


def test_a_lost_image_attempts_container_is_gone_before_its_retry_runs(server: ServerProcess) -> None:
    with server.client() as c:
        r = c.post("/jobs", json={"spec": {"command": ["python3", "-c", JOB], "image": python_image(),
                                           "retries": 1, "resources": {"cpus": 1}}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

        def lines(attempt: int) -> list[str]:
            r = c.get(f"/jobs/{job_id}/logs", params={"attempt": attempt, "limit": 1000})
            return [x["text"] for x in r.json()["lines"]] if r.status_code == 200 else []

        wait_for(lambda: "first" in lines(1), timeout=60, what="attempt 1's container to run")
        first = f"modelyard-{job_id}-1"
        assert first in containers()
        supervisor = json.loads((server.home / "runs" / f"{job_id}-1" / "supervisor.pid").read_text())["pid"]
        os.kill(supervisor, signal.SIGSTOP)
        try:
            wait_for(lambda: "second" in lines(2), timeout=60, what="the retry to run")
            assert first not in containers()  # killed and removed before attempt 2 was placed
            job = wait_for(lambda: (j := c.get(f"/jobs/{job_id}").json())["state"] in ("succeeded", "failed")
                           and j, timeout=60, what="the retry to end")
        finally:
            try:
                os.kill(supervisor, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert job["attempts"][0]["reason"] == "supervisor_lost" and job["state"] == "succeeded", job
