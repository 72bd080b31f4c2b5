"""A report with a forged seq of 1,000,000,000 (a stolen or guessed token) must not make the
server take the attempt's later real batches for repeats; and once the attempt ended, the
token speaks for nothing. Through a real server, a real supervisor and a real job."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import wait_for
from servers import ServerProcess

JOB = """
import os, sys, time
gate = sys.argv[1]
print("line 0", flush=True)
while not os.path.exists(gate):
    time.sleep(0.02)
for i in range(1, 15):
    print(f"line {i}", flush=True)
    time.sleep(0.05)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G"}).start()
    yield srv
    srv.stop()


def test_a_forged_seq_neither_loses_real_batches_nor_outlives_the_attempt(server: ServerProcess, tmp_path: Path) -> None:
    script, gate = tmp_path / "job.py", tmp_path / "gate"
    script.write_text(JOB)
    with server.client() as c:
        job_id = c.post("/jobs", json={"spec": {"command": [sys.executable, str(script), str(gate)]}}).json()["id"]

        def lines() -> list[str]:
            r = c.get(f"/jobs/{job_id}/logs", params={"limit": 1000})
            return [l["text"] for l in r.json()["lines"]] if r.status_code == 200 else []

        wait_for(lambda: "line 0" in lines(), timeout=30, what="the job to start")
        attempt = c.get(f"/jobs/{job_id}").json()["attempts"][0]
        # what a job of the same uid could read before the sandbox: the attempt's config
        cfg = json.loads((server.home / "runs" / f"{job_id}-1" / "supervisor.json").read_text())
        report = f"{server.url}/api/v1/attempts/{cfg['attempt_id']}/report"
        auth = {"Authorization": f"Bearer {cfg['token']}"}
        forged = {"seq": 1_000_000_000, "logs": [[1.0, "stdout", "forged"]],
                  "events": [{"type": "exited", "reason": "exit_zero", "exit_code": 0}], "final": True}
        r = httpx.post(report, json=forged, headers=auth)
        assert r.status_code == 409, r.text
        assert r.json()["expected_seq"] >= 2 and r.json()["error"]["field"] == "seq"
        gate.touch()
        wait_for(lambda: c.get(f"/jobs/{job_id}").json()["state"] not in ("starting", "running"), timeout=60)
        assert c.get(f"/jobs/{job_id}").json()["state"] == "succeeded"
        assert [t for t in lines() if t.startswith("line")] == [f"line {i}" for i in range(15)]
        assert "forged" not in lines()
        assert attempt["number"] == 1
        # the attempt is over: its token can add nothing, at any seq past the last
        for seq in (1_000_000_001, 10**6):
            r = httpx.post(report, json={"seq": seq, "logs": [[2.0, "stdout", "late"]]}, headers=auth)
            assert r.status_code == 410 and "has ended" in r.json()["error"]["message"], r.text
        assert "late" not in lines() and c.get(f"/jobs/{job_id}").json()["state"] == "succeeded"
