"""``--requirements`` jobs: a uv virtualenv per requirements and interpreter, built once, cached, bounded.

The wheels are made in the test and found with ``--no-index --find-links``
lines in the requirements text, so nothing here waits on the internet.
"""
from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import wait_for
from serverproc import clean_env, cli
from servers import ServerProcess
from test_e2e_jobs import all_logs, submit, wait_state
from wheels import local_requirements, make_wheel

from modelyard.supervisor import venv

# The command is found on PATH: the venv's bin/ must come first for it to be the venv's python.
SHOW = ["python", "-c", "import sys, tinypkg; print('tinypkg', tinypkg.VALUE, sys.prefix)"]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    for version in ("1.0", "2.0", "3.0", "4.0"):
        make_wheel(folder, version=version, body=f"VALUE = {version.split('.')[0]}\n")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("venvs") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=8,memory=16G"}).start()
    yield srv
    srv.stop()


def texts(c: httpx.Client, job_id: int) -> list[str]:
    return [line["text"] for line in all_logs(c, job_id)]


def cache_root(server: ServerProcess) -> Path:
    return server.home / "cache" / "venvs"


def test_two_jobs_asking_at_once_make_one_build_and_a_later_job_reuses_it(
        server: ServerProcess, wheels: Path) -> None:
    req = local_requirements(wheels, "tinypkg==1.0")
    key = venv.venv_key(req, sys.executable, sys.version)  # the server runs this interpreter
    root = cache_root(server)
    root.mkdir(parents=True, exist_ok=True)
    with server.client() as c, open(root / f"{key}.lock", "a") as held:
        # Hold the entry's lock so that both jobs are certainly asking at the same time.
        fcntl.flock(held, fcntl.LOCK_EX)
        jobs = [submit(c, SHOW, requirements=req, name=f"at-once-{i}")["id"] for i in range(2)]
        for job_id in jobs:
            wait_for(lambda: any("waiting for another job's build" in t for t in texts(c, job_id)),
                     timeout=60, what=f"job {job_id} to wait for the build")
        fcntl.flock(held, fcntl.LOCK_UN)
        logs = []
        for job_id in jobs:
            assert wait_state(c, job_id, "succeeded")["state"] == "succeeded"
            logs.append(texts(c, job_id))
        builds = [t for log in logs for t in log if "building virtualenv" in t]
        assert len(builds) == 1, builds
        for log in logs:
            assert f"tinypkg 1 {root / key}" in log, log
        # the build's own output is in the job's log, as uv printed it
        assert any("uv:" in t and "+ tinypkg==1.0" in t for log in logs for t in log)

        later = submit(c, SHOW, requirements=req, name="later")["id"]
        wait_state(c, later, "succeeded")
        log = texts(c, later)
        assert any(f"virtualenv {key} from the cache" in t for t in log), log
        assert not any("building virtualenv" in t or t.startswith("[modelyard] uv:") for t in log), log
        assert f"tinypkg 1 {root / key}" in log
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [key]
    assert (root / key).stat().st_mode & 0o005 == 0o005  # readable by a job of another uid


def test_a_job_waiting_for_another_jobs_build_can_be_stopped(server: ServerProcess, wheels: Path) -> None:
    req = local_requirements(wheels, "tinypkg==3.0")
    root = cache_root(server)
    root.mkdir(parents=True, exist_ok=True)
    with server.client() as c, open(root / f"{venv.venv_key(req, sys.executable, sys.version)}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a build that never ends
        job = submit(c, SHOW, requirements=req)["id"]
        wait_for(lambda: any("waiting for another job's build" in t for t in texts(c, job)), timeout=60,
                 what="the job to wait for the build")
        assert c.post(f"/jobs/{job}/stop").status_code == 200
        done = wait_state(c, job, "stopped", "failed", timeout=30)
        assert done["state"] == "stopped", done
        assert any("stopped while waiting for the environment" in t for t in texts(c, job))


def test_an_unresolvable_requirement_fails_the_attempt_with_the_resolvers_message(
        server: ServerProcess, wheels: Path) -> None:
    with server.client() as c:
        job = submit(c, SHOW, requirements=local_requirements(wheels, "tinypkg==9.9"))
        done = wait_state(c, job["id"], "failed", "succeeded")
        assert done["state"] == "failed"
        attempt = done["attempts"][0]
        assert attempt["reason"] == "start_failed"
        assert "No solution found" in attempt["message"] and "tinypkg==9.9" in attempt["message"], attempt
        assert any("No solution found" in t for t in texts(c, job["id"]))
    assert not [p for p in cache_root(server).iterdir() if p.name.startswith(".tmp-")]


def test_without_requirements_a_job_runs_in_the_servers_python(server: ServerProcess) -> None:
    code = "import os, sys; print('prefix', sys.prefix); print('venv', os.environ.get('VIRTUAL_ENV'))"
    with server.client() as c:
        job = submit(c, ["python", "-c", code], env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
        wait_state(c, job["id"], "succeeded")
        log = texts(c, job["id"])
    assert f"prefix {sys.prefix}" in log, log
    assert not any("virtualenv" in t for t in log)
    assert not any(str(cache_root(server)) in t for t in log)


def lease(root: Path, wheels: Path, version: str, limit: int, notes: list[str] | None = None) -> venv.VenvLease:
    return venv.acquire(root, local_requirements(wheels, f"tinypkg=={version}"), python=None, size_limit=limit,
                        note=(notes.append if notes is not None else lambda _: None), stop=threading.Event())


def entry_size(lease: venv.VenvLease) -> int:
    return int((lease.path / venv.SIZE_FILE).read_text())


def test_the_cache_evicts_the_least_recently_used_venv_that_no_job_holds(tmp_path: Path, wheels: Path) -> None:
    root = tmp_path / "venvs"
    a = lease(root, wheels, "1.0", 10**12)
    b = lease(root, wheels, "2.0", 10**12)
    room = entry_size(a) + entry_size(b) + entry_size(a) // 2  # two fit, three do not
    a.release()
    b.release()
    os.utime(b.path / venv.USED_FILE, (1, 1))  # b used long ago, a more recently
    notes: list[str] = []
    c = lease(root, wheels, "3.0", room, notes)
    assert not b.path.exists() and a.path.exists() and c.path.exists()
    assert any(f"evicted virtualenv {b.key}" in n for n in notes)
    c.release()

    # a venv a job holds is never evicted, however old and however small the bound
    os.utime(a.path / venv.USED_FILE, (1, 1))
    held = lease(root, wheels, "1.0", 1)  # a again: held now
    assert held.path == a.path
    d = lease(root, wheels, "4.0", 1)
    assert a.path.exists() and d.path.exists() and not c.path.exists()
    held.release()
    d.release()
    assert sorted(venv.evict(root, 1)) == sorted([a.key, d.key])
    assert not a.path.exists() and not d.path.exists()


def test_the_interpreter_is_part_of_the_key_and_can_be_chosen(tmp_path: Path, wheels: Path) -> None:
    req = local_requirements(wheels, "tinypkg==1.0")
    stop = threading.Event()
    mine = venv.acquire(tmp_path, req, python=None, size_limit=10**12, note=lambda _: None, stop=stop)
    debian = venv.acquire(tmp_path, req, python="/usr/bin/python3", size_limit=10**12, note=lambda _: None, stop=stop)
    assert mine.key != debian.key
    assert "home = /usr/bin" in (debian.path / "pyvenv.cfg").read_text()


def test_run_local_requirements_runs_in_the_venv_a_job_would_get(tmp_path: Path, wheels: Path) -> None:
    home = tmp_path / "home"
    code = tmp_path / "code"
    code.mkdir()
    req = tmp_path / "requirements.txt"
    req.write_text(local_requirements(wheels, "tinypkg==2.0"))
    key = venv.venv_key(req.read_text(), sys.executable, sys.version)
    first = cli(["run", "--local", "--requirements", str(req), "--", *SHOW], clean_env(home), cwd=code)
    assert first.returncode == 0, first.stderr
    assert f"tinypkg 2 {home / 'cache' / 'venvs' / key}" in first.stdout  # the cache jobs on this machine share
    assert "building virtualenv" in first.stderr and "+ tinypkg==2.0" in first.stderr
    again = cli(["run", "--local", "--requirements", str(req), "--", *SHOW], clean_env(home), cwd=code)
    assert again.returncode == 0 and "from the cache" in again.stderr and "building" not in again.stderr

    req.write_text(local_requirements(wheels, "tinypkg==9.9"))
    bad = cli(["run", "--local", "--requirements", str(req), "--", *SHOW], clean_env(home), cwd=code)
    assert bad.returncode == 127 and "No solution found" in bad.stderr, bad.stderr
