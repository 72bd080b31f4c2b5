"""Jobs with ``--image``: real Podman, a real server, images built here (tests/images.py).

One server for the module and short jobs, run side by side where they can be,
keep this file's time small. Podman missing fails these tests; they never skip.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import wait_for
from modelyard.jobs.launch import Environment, Sandbox
from modelyard.jobs.states import TerminationReason
from modelyard.supervisor.attempt import run_attempt
from modelyard.supervisor.config import SupervisorConfig
from images import podman, python_image, remove_containers_under
from serverproc import cli, clean_env
from servers import ServerProcess
from test_e2e_jobs import all_logs, tar_gz, wait_state


@pytest.fixture(scope="module")
def image() -> str:
    return python_image()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, image: str) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("containers") / "home"
    srv = ServerProcess(home, env={"MODELYARD_CAPACITY": "cpus=2,memory=8G", "MODELYARD_STOP_GRACE": "2"}).start()
    yield srv
    srv.stop()
    remove_containers_under(home)


def submit(c: httpx.Client, image: str, code: str, *, snapshot: str | None = None, **spec: object) -> dict:
    body: dict = {"spec": {"command": ["python3", "-c", code], "image": image, **spec}}
    if snapshot:
        body["snapshot"] = snapshot
    r = c.post("/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def containers() -> list[str]:
    out = subprocess.run([podman(), "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def name_of(job: dict) -> str:
    return f"modelyard-{job['id']}-1"


def texts(c: httpx.Client, job_id: int) -> list[str]:
    return [line["text"] for line in all_logs(c, job_id)]


PROBE = """
import json, os
print(json.dumps({"cwd": os.getcwd(), "code": sorted(os.listdir(".")),
                  "env": {k: v for k, v in os.environ.items() if k.startswith(("MODELYARD_", "CUDA_"))}}))
print(json.dumps({"metric": "loss", "value": 0.25, "step": 3}))
data = os.environ["MODELYARD_DATA_DIR"]
print("data files", sorted(os.listdir(data)))
try:
    open(os.path.join(data, "new.txt"), "w")
    print("data is writable")
except OSError as e:
    print("data write refused:", e.errno)
with open(os.path.join(os.environ["MODELYARD_OUTPUT_DIR"], "model.bin"), "wb") as f:
    f.write(b"weights from the container")
"""


def test_an_image_job_sees_its_paths_and_reports_like_a_bare_one(server: ServerProcess, image: str,
                                                                  tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "a.txt").write_text("a")
    with server.client() as c:
        r = c.post("/datasets", json={"name": "tiny", "source": str(src)})
        assert r.status_code in (200, 201), r.text
        snap = c.post("/snapshots", content=tar_gz({"train.py": b"# the job's code\n"}),
                      headers={"Content-Type": "application/gzip"}).json()["key"]
        job = submit(c, image, PROBE, snapshot=snap, dataset="tiny")
        done = wait_state(c, job["id"], "succeeded", "failed", timeout=120)
        lines = texts(c, job["id"])
        assert done["state"] == "succeeded", lines
        seen = json.loads(next(x for x in lines if x.startswith('{"cwd"')))
        assert seen["cwd"] == "/modelyard/code" and "train.py" in seen["code"]
        env = seen["env"]
        assert env["MODELYARD_OUTPUT_DIR"] == "/modelyard/output"
        assert env["MODELYARD_DATA_DIR"] == "/modelyard/data"
        assert env["MODELYARD_JOB_ID"] == str(job["id"]) and env["MODELYARD_ATTEMPT"] == "1"
        assert env["CUDA_VISIBLE_DEVICES"] == ""
        assert "data files ['all', 'manifest.json']" in lines
        assert "data write refused: 30" in lines  # EROFS: the dataset is mounted read-only
        points = c.get(f"/jobs/{job['id']}/metrics").json()
        assert "loss" in json.dumps(points) and "0.25" in json.dumps(points)
        assert c.get(f"/jobs/{job['id']}/outputs/model.bin").content == b"weights from the container"
    assert name_of(job) not in containers()


def test_stop_and_max_runtime_end_the_container_and_remove_it(server: ServerProcess, image: str) -> None:
    code = "import time\nprint('up', flush=True)\ntime.sleep(300)\n"
    with server.client() as c:
        stopped = submit(c, image, code)
        timed = submit(c, image, code, max_runtime=4)
        wait_for(lambda: "up" in texts(c, stopped["id"]), timeout=90, what="the job to start")
        assert name_of(stopped) in containers()
        assert c.post(f"/jobs/{stopped['id']}/stop").status_code == 200
        assert wait_state(c, stopped["id"], "stopped", timeout=60)["state"] == "stopped"
        done = wait_state(c, timed["id"], "timed_out", timeout=90)
        assert done["attempts"][0]["reason"] == "max_runtime"
    # the supervisor reports the end only after it removed the container
    left = containers()
    assert name_of(stopped) not in left and name_of(timed) not in left


def test_a_missing_image_fails_start_failed_with_the_runtimes_message(server: ServerProcess) -> None:
    with server.client() as c:
        job = submit(c, "docker.io/modelyard/no-such-image:0", "print('never')")
        done = wait_state(c, job["id"], "failed", timeout=90)
        attempt = done["attempts"][0]
        assert attempt["reason"] == "start_failed"
        assert "could not be pulled" in attempt["message"] and "Error:" in attempt["message"], attempt
        assert any(x.startswith("[modelyard] pull:") for x in texts(c, job["id"]))


def test_memory_and_cpus_are_the_containers_limits(server: ServerProcess, image: str) -> None:
    hog = "x = bytearray(400 * 1024 * 1024)\nprint('survived', len(x))\n"
    quota = ("import os\n"
             "if os.path.exists('/sys/fs/cgroup/cpu.max'):\n"  # cgroup v2
             "    q, p = open('/sys/fs/cgroup/cpu.max').read().split()\n"
             "else:\n"  # v1, as on this project's machines
             "    q, p = open('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').read(), open('/sys/fs/cgroup/cpu/cpu.cfs_period_us').read()\n"
             "print('quota', int(q) / int(p))")
    with server.client() as c:
        big = submit(c, image, hog, resources={"memory": "100M", "cpus": 0.5})
        cpu = submit(c, image, quota, resources={"cpus": 0.5})
        done = wait_state(c, big["id"], "failed", "succeeded", timeout=90)
        assert done["state"] == "failed", texts(c, big["id"])
        assert done["attempts"][0]["message"].startswith("out of memory (limit 100M)")
        assert wait_state(c, cpu["id"], "succeeded", "failed", timeout=90)["state"] == "succeeded"
        assert "quota 0.5" in texts(c, cpu["id"])


def test_run_local_with_an_image_runs_as_a_job_would(image: str, tmp_path: Path) -> None:
    wd = tmp_path / "code"
    wd.mkdir()
    (wd / "train.py").write_text(
        "import os\nprint('at', os.getcwd(), os.environ['MODELYARD_OUTPUT_DIR'], os.path.exists('/etc/debian_version'))\n"
        "open(os.path.join(os.environ['MODELYARD_OUTPUT_DIR'], 'o.txt'), 'w').write('x')\nraise SystemExit(3)\n")
    home = tmp_path / "home"
    done = cli(["run", "--local", "--image", image, "--", "python3", "train.py"], clean_env(home), cwd=wd)
    assert done.returncode == 3, done.stderr
    assert "at /modelyard/code /modelyard/output True" in done.stdout
    assert [p.read_text() for p in (home / "runs").glob("local-*/output/o.txt")] == ["x"]
    assert not [n for n in containers() if n.startswith("modelyard-local-")]


def test_a_container_the_runtime_cannot_run_is_start_failed(image: str, tmp_path: Path) -> None:
    config = SupervisorConfig(job_id="t", argv=["python3", "-c", "print('never')"], run_dir=tmp_path / "run",
                              environment=Environment(image=image), sandbox=Sandbox(memory=1000))  # runc cannot apply 1000 bytes
    outcome = run_attempt(config)  # local mode: no server, the outcome is returned
    assert outcome.reason is TerminationReason.START_FAILED, outcome
    assert outcome.message.startswith("the container could not be run: ") and "Error" in outcome.message


SLOW_PULL = """#!/bin/sh
# A registry we cannot reach from here, played slowly: `pull` prints progress for 6 s, then fails.
case "$1" in
  version|rm) exit 0 ;;
  image) exit 1 ;;
  pull) for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "Copying blob $i of 12"; sleep 0.5; done
        echo "Error: simulated registry timeout" >&2; exit 125 ;;
esac
exit 125
"""


def test_a_long_pull_shows_its_progress_and_is_not_taken_for_a_dead_supervisor(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "podman").write_text(SLOW_PULL)
    (fake / "podman").chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}", "MODELYARD_HEARTBEAT_TIMEOUT": "2",
           "MODELYARD_CONTAINER_RUNTIME": "podman"}
    srv = ServerProcess(tmp_path / "home", env=env).start()
    try:
        with srv.client() as c:
            job = submit(c, "registry.example/slow:1", "print('never')")
            done = wait_state(c, job["id"], "failed", timeout=60)
            lines = texts(c, job["id"])
            events = c.get(f"/jobs/{job['id']}/events").json()["events"]
    finally:
        srv.stop()
    assert done["attempts"][0]["reason"] == "start_failed", done  # not lost, though the pull outlasted 2 s
    assert "simulated registry timeout" in done["attempts"][0]["message"]
    assert sum(x.startswith("[modelyard] pull: Copying blob") for x in lines) == 12
    assert "lost" not in [e["to"] for e in events]
