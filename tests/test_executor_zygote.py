"""The local executor's supervisor zygote: real forks, real supervisors, real jobs; one through a real server."""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from conftest import kill_tree, wait_for
from servers import ServerProcess

from modelyard.executors.base import Launch
from modelyard.jobs.launch import LaunchSpec
from modelyard.executors.local import PID_FILE, LocalExecutor, Zygote
from modelyard.jobs import JobState, Resources
from modelyard.db.records import Attempt

PY = sys.executable
# a job that runs until the test releases it (a file appears), so the supervisor stays up meanwhile
WAIT_JOB = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.02)\n"


@pytest.fixture
def executor() -> Iterator[LocalExecutor]:
    ex = LocalExecutor()
    yield ex
    ex.close()


@pytest.fixture
def supervisors() -> Iterator[list[psutil.Process]]:
    """Supervisors a test started: they outlive everything by design, so the test ends them."""
    procs: list[psutil.Process] = []
    yield procs
    for p in procs:
        if p.is_running():  # the same process, not a reused pid
            kill_tree(p.pid)


def launch(tmp_path: Path, name: str, argv: list[str]) -> Launch:
    run_dir = tmp_path / "runs" / name
    # local mode (no server_url): the supervisor runs the job and exits with its code
    return Launch(LaunchSpec(job_id=name, argv=argv, run_dir=run_dir, workdir=tmp_path))


def attempt(handle: str | None) -> Attempt:
    return Attempt(id=1, job_id=1, number=1, state=JobState.RUNNING, gpus=(), resources=Resources(),
                   exit_code=None, reason=None, message=None, executor="local", handle=handle,
                   created_at=0.0, started_at=None, ended_at=None, last_heartbeat=0.0, last_seq=0,
                   log_count=0, stop_requested=False)


def start(executor: LocalExecutor, tmp_path: Path, name: str, supervisors: list[psutil.Process]) -> tuple[dict[str, Any], Path]:
    release = tmp_path / f"release-{name}"
    handle = executor.start(launch(tmp_path, name, [PY, "-c", WAIT_JOB, str(release)]))
    info = orjson.loads(handle)
    supervisors.append(psutil.Process(info["pid"]))
    return info, release


def test_a_forked_supervisor_has_its_own_session_and_outlives_the_zygote(
        executor: LocalExecutor, tmp_path: Path, supervisors: list[psutil.Process]) -> None:
    info, release = start(executor, tmp_path, "a", supervisors)
    assert executor._zygote is not None  # forked, not the fallback
    pid = info["pid"]
    assert os.getsid(pid) == pid
    assert psutil.Process(pid).ppid() not in (os.getpid(), executor._zygote.pid)
    assert "--zygote" in psutil.Process(pid).cmdline()
    wait_for(lambda: psutil.Process(pid).children(), what="the job to start")
    handle = orjson.dumps(info).decode()
    zygote = executor._zygote.proc
    executor.close()  # closes its stdin: the zygote ends
    assert zygote.wait(10) == 0
    assert executor.alive(attempt(handle))
    release.touch()
    wait_for(lambda: not executor.alive(attempt(handle)), what="the supervisor to end with its job")
    assert b"Traceback" not in (tmp_path / "runs" / "a" / "supervisor.log").read_bytes()


def test_a_supervisor_survives_its_zygote_being_killed(executor: LocalExecutor, tmp_path: Path, supervisors: list[psutil.Process]) -> None:
    info, release = start(executor, tmp_path, "a", supervisors)
    assert executor._zygote is not None
    executor._zygote.proc.kill()
    executor._zygote.proc.wait(10)
    handle = orjson.dumps(info).decode()
    assert executor.alive(attempt(handle))
    release.touch()
    wait_for(lambda: not executor.alive(attempt(handle)), what="the supervisor to end with its job")


def test_a_reused_pid_is_not_taken_for_the_supervisor(executor: LocalExecutor, tmp_path: Path, supervisors: list[psutil.Process]) -> None:
    info, release = start(executor, tmp_path, "a", supervisors)
    assert executor.alive(attempt(orjson.dumps(info).decode()))
    # the same pid, started at another time: another process
    assert not executor.alive(attempt(orjson.dumps({**info, "started": info["started"] - 10}).decode()))
    # a forked supervisor's command line is the zygote's: without a start time it cannot be recognised
    old_style = {k: v for k, v in info.items() if k != "started"}
    assert not executor.alive(attempt(orjson.dumps(old_style).decode()))
    release.touch()


def test_a_dead_zygote_falls_back_and_is_started_again(executor: LocalExecutor, tmp_path: Path, supervisors: list[psutil.Process]) -> None:
    first, release_a = start(executor, tmp_path, "a", supervisors)
    assert executor._zygote is not None
    old = executor._zygote.proc
    old.kill()
    old.wait(10)
    fallback, release_b = start(executor, tmp_path, "b", supervisors)
    pid = fallback["pid"]
    # a fresh interpreter; between its fork and its exec a new process's command line is the
    # parent's, or empty, so wait for the exec rather than read it once
    wait_for(lambda: str(tmp_path / "runs" / "b" / "supervisor.json") in psutil.Process(pid).cmdline(),
             timeout=10, what="the fallback supervisor's exec")
    assert os.getsid(pid) == pid
    assert executor.alive(attempt(orjson.dumps(fallback).decode()))
    third, release_c = start(executor, tmp_path, "c", supervisors)
    assert executor._zygote is not None and executor._zygote.pid != old.pid
    assert "--zygote" in psutil.Process(third["pid"]).cmdline()
    for release in (release_a, release_b, release_c):
        release.touch()
    for info in (first, fallback, third):
        handle = orjson.dumps(info).decode()
        wait_for(lambda: not executor.alive(attempt(handle)), what="the supervisors to end")


def test_a_zygote_that_does_not_answer_is_replaced_after_its_deadline(
        executor: LocalExecutor, tmp_path: Path, supervisors: list[psutil.Process]) -> None:
    first, release_a = start(executor, tmp_path, "a", supervisors)
    assert executor._zygote is not None
    stuck = executor._zygote.proc
    os.kill(stuck.pid, signal.SIGSTOP)
    late, release_b = start(executor, tmp_path, "b", supervisors)  # waits out the deadline, then falls back
    assert stuck.poll() is not None  # killed: a late answer must not be taken for the next launch's
    wait_for(lambda: str(tmp_path / "runs" / "b" / "supervisor.json") in psutil.Process(late["pid"]).cmdline(),
             timeout=10, what="the fallback supervisor's exec")
    release_a.touch()
    release_b.touch()


def test_an_attempt_the_zygote_forked_without_answering_is_adopted_not_run_twice(
        executor: LocalExecutor, tmp_path: Path, supervisors: list[psutil.Process]) -> None:
    # the zygote forked the supervisor but its answer was lost (it died, or the deadline passed):
    # the fallback finds the attempt claimed and takes the supervisor's pid from its pid file
    la = launch(tmp_path, "a", [PY, "-c", WAIT_JOB, str(tmp_path / "release")])
    handle = executor.start(la)
    supervisors.append(psutil.Process(orjson.loads(handle)["pid"]))
    assert (la.run_dir / PID_FILE).exists()
    again = executor._start_process(la.run_dir / "supervisor.json", la.run_dir)
    assert orjson.loads(again) == orjson.loads(handle)
    assert executor._children == {}  # nothing was started
    (tmp_path / "release").touch()


def test_a_zygote_ends_at_eof_and_refuses_bad_requests(tmp_path: Path) -> None:
    zygote = Zygote(tmp_path)
    try:
        with pytest.raises(Exception, match="could not fork the supervisor"):
            zygote.launch(tmp_path / "missing.json", tmp_path)
        assert zygote.proc.poll() is None  # an error reply, and it goes on serving
    finally:
        zygote.close()
    assert zygote.proc.returncode == 0


# -- through a real server ---------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G"}).start()
    yield srv
    srv.stop()


def zygotes_of(server: ServerProcess) -> list[psutil.Process]:
    assert server.proc is not None
    return [p for p in psutil.Process(server.proc.pid).children() if "--zygote" in p.cmdline()]


def test_a_job_runs_under_a_forked_supervisor_and_the_zygote_ends_with_the_server(server: ServerProcess) -> None:
    # the job prints its supervisor's command line: the zygote's, not "-m modelyard.supervisor CONFIG"
    code = "import os; print(open(f'/proc/{os.getppid()}/cmdline').read().split(chr(0)))"
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"command": [PY, "-c", code]}}).json()
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] in ("succeeded", "failed"), 60,
                 what="the job to end")
        assert c.get(f"/jobs/{job['id']}").json()["state"] == "succeeded"
        lines = c.get(f"/jobs/{job['id']}/logs").json()["lines"]
    assert "--zygote" in lines[0]["text"], lines
    (zygote,) = zygotes_of(server)
    server.kill(signal.SIGKILL)  # no clean shutdown: the zygote goes at EOF on its stdin
    wait_for(lambda: gone(zygote), 10, what="the zygote to exit")


def gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE  # reparented, and PID 1 may never reap it
    except psutil.NoSuchProcess:
        return True
