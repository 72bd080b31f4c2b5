"""A supervisor stopped with SIGSTOP: declared lost, it is killed with its command before the
retry starts, so two attempts of a job never run at once, and none of its lines are stored
after it was declared lost (even when it is let go on again)."""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from conftest import wait_for
from servers import ServerProcess

# Attempt 1 prints its pid and its supervisor's, then a line every 50 ms for good. Attempt 2
# says whether attempt 1's command still runs when it starts (a zombie counts as gone), and ends.
JOB = """
import os, sys, time
attempt = os.environ["MODELYARD_ATTEMPT"]
out = os.environ["MODELYARD_OUTPUT_DIR"]
if attempt == "1":
    open(os.path.join(out, "first.pid"), "w").write(str(os.getpid()))
    print("pids", os.getpid(), os.getppid(), flush=True)
    i = 0
    while True:
        i += 1
        print("tick", i, flush=True)
        time.sleep(0.05)
pid = int(sys.argv[1])
try:
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
except FileNotFoundError:
    state = "gone"
print("first attempt's command:", "running" if state not in ("gone", "Z", "X") else "gone", flush=True)
"""


def dead(pid: int) -> bool:
    """Gone, or a zombie (this machine's PID 1 reaps orphans late, if at all)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_CAPACITY": "gpus=1,cpus=2,memory=4G",
                                                "MODELYARD_HEARTBEAT_TIMEOUT": "3"}).start()
    yield srv
    srv.stop()


def test_a_stopped_supervisor_is_killed_with_its_command_before_the_retry(server: ServerProcess,
                                                                          tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    with server.client() as c:
        r = c.post("/jobs", json={"spec": {"command": [sys.executable, str(script), "PID"], "retries": 1,
                                           "resources": {"gpus": 1, "cpus": 1}}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

        def first_lines() -> list[dict]:
            r = c.get(f"/jobs/{job_id}/logs", params={"attempt": 1, "limit": 10000})
            return r.json()["lines"] if r.status_code == 200 else []  # 404 until attempt 1 is placed

        line = wait_for(lambda: next((l["text"] for l in first_lines() if l["text"].startswith("pids")), None),
                        timeout=30, what="attempt 1 to start")
        command, supervisor = (int(x) for x in str(line).split()[1:])
        # attempt 2 gets attempt 1's command's pid to look for: the spec's argv is fixed, so through
        # a file the test fills in before attempt 2 can start (the supervisor is stopped first)
        os.kill(supervisor, signal.SIGSTOP)
        script.write_text(JOB.replace("pid = int(sys.argv[1])", f"pid = {command}"))
        try:
            job = wait_for(lambda: (j := c.get(f"/jobs/{job_id}").json())["state"] in ("succeeded", "failed")
                           and j, timeout=60, what="the retry to end")
        finally:
            try:
                os.kill(supervisor, signal.SIGCONT)  # were it still there, it would send its spool now
            except ProcessLookupError:
                pass
        first, second = job["attempts"]
        assert first["state"] == "lost" and first["reason"] == "supervisor_lost", first
        assert job["state"] == "succeeded" and second["number"] == 2, job
        second_lines = [l["text"] for l in c.get(f"/jobs/{job_id}/logs",
                                                 params={"attempt": 2, "limit": 1000}).json()["lines"]]
        assert "first attempt's command: gone" in second_lines, second_lines
        assert dead(supervisor) and dead(command)
        # nothing of attempt 1 arrived after it was declared lost: its supervisor is dead, and a
        # late batch would be refused (tests/test_report_protocol.py)
        stored = first_lines()
        lost_at = datetime.fromisoformat(first["ended_at"].replace("Z", "+00:00")).timestamp()
        assert stored and all(l["t"] <= lost_at for l in stored)
        assert not any("tick" in l for l in second_lines)  # outputs and logs not mixed
