"""Limits hold on a bare process: memory (a cgroup, out of memory as its own reason), cores, threads,
death with the supervisor, and an environment with nothing of the server's in it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import wait_for
from servers import ServerProcess
from test_e2e_jobs import all_logs, wait_state

from modelyard.jobs import TerminationReason
from modelyard.jobs.launch import Sandbox
from modelyard.supervisor import SupervisorConfig, run_attempt
from modelyard.supervisor.cgroup import CGROUP_ROOT, own_group

MiB = 1024**2
PY = "/usr/bin/python3"  # any uid can run Debian's; the pyenv one under /root only root can


def local(tmp_path: Path, code: str, **sandbox: Any) -> SupervisorConfig:
    return SupervisorConfig(job_id="lim", argv=[PY, "-c", code], run_dir=tmp_path / "run",
                            sandbox=Sandbox(**sandbox), stop_grace=2)


def output(tmp_path: Path) -> dict[str, Any]:
    lines = [ln for ln in (tmp_path / "run" / "log.txt").read_text().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def job_cgroups() -> list[Path]:
    own = own_group("memory")
    assert own is not None
    parent = CGROUP_ROOT / "memory" / own.relative_to("/") / "modelyard"
    return [p for p in parent.iterdir() if p.is_dir()] if parent.exists() else []


ALLOCATE = "s = b'x' * (300 * 1024 * 1024); print('allocated', len(s))"


def test_a_job_over_its_memory_fails_out_of_memory_and_its_cgroup_goes(tmp_path: Path) -> None:
    before = set(job_cgroups())
    outcome = run_attempt(local(tmp_path, ALLOCATE, memory=100 * MiB))
    assert outcome.reason is TerminationReason.OUT_OF_MEMORY
    assert outcome.reason.to_state().value == "failed" and not outcome.reason.retryable()
    assert outcome.message == "out of memory (limit 100M)"
    assert "allocated" not in (tmp_path / "run" / "log.txt").read_text()
    assert set(job_cgroups()) <= before  # removed after the attempt


def test_the_same_job_within_its_memory_succeeds(tmp_path: Path) -> None:
    # the control: the allocation itself is fine, so the failure above is the limit's doing
    outcome = run_attempt(local(tmp_path, ALLOCATE, memory=600 * MiB))
    assert outcome.reason is TerminationReason.EXIT_ZERO


def test_a_non_oom_failure_under_a_limit_is_not_called_out_of_memory(tmp_path: Path) -> None:
    outcome = run_attempt(local(tmp_path, "import sys; sys.exit(3)", memory=100 * MiB))
    assert outcome.reason is TerminationReason.EXIT_NONZERO and outcome.exit_code == 3


REPORT = ("import json, os; print(json.dumps({'cores': sorted(os.sched_getaffinity(0)), "
          "'omp': os.environ.get('OMP_NUM_THREADS'), 'mkl': os.environ.get('MKL_NUM_THREADS'), "
          "'cgroup': open('/proc/self/cgroup').read()}))")


def test_the_job_sees_only_its_cores_and_thread_counts_match_its_cpus(tmp_path: Path) -> None:
    real = sorted(os.sched_getaffinity(0))
    outcome = run_attempt(local(tmp_path, REPORT, cpus=1, cpuset=[1]))
    assert outcome.reason is TerminationReason.EXIT_ZERO
    seen = output(tmp_path)
    assert seen["cores"] == [real[1 % len(real)]]
    assert seen["omp"] == seen["mkl"] == "1"
    assert ":cpu:/" in seen["cgroup"] and "/modelyard/lim-1-" in seen["cgroup"]  # under a CPU quota


def test_declared_cores_past_the_machines_map_onto_it_modulo(tmp_path: Path) -> None:
    real = sorted(os.sched_getaffinity(0))
    run_attempt(local(tmp_path, REPORT, cpus=2.5, cpuset=[len(real), len(real) + 1, len(real) + 2]))
    seen = output(tmp_path)
    assert seen["cores"] == sorted({real[i % len(real)] for i in range(len(real), len(real) + 3)})
    assert seen["omp"] == "3"  # ceil(2.5)


def test_the_environment_has_nothing_of_the_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server_only = {"MODELYARD_HOME": "/srv/my", "MODELYARD_DATABASE_URL": "postgresql://u:pw@db/x",
                   "MODELYARD_STORAGE_URL": "s3://bucket", "MODELYARD_TOKEN": "my_admin",
                   "AWS_SECRET_ACCESS_KEY": "server-creds", "SOME_OPERATOR_VAR": "x"}
    for k, v in server_only.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LANG", "C.UTF-8")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    config = SupervisorConfig(job_id="env", argv=[PY, "-c", code], run_dir=tmp_path / "run",
                              env={"MINE": "1"}, secrets={"API_KEY": "s3cret"}, token="my_report_token")
    assert run_attempt(config).reason is TerminationReason.EXIT_ZERO
    env = output(tmp_path)
    assert not set(server_only) & set(env)
    assert not any("my_report_token" in v for v in env.values())  # the report token is the supervisor's
    # the secret reached it (the supervisor masks its value in what the job prints)
    assert env["MINE"] == "1" and env["API_KEY"] == "***" and env["LANG"] == "C.UTF-8"
    assert env["PATH"] and env["HOME"] == os.environ["HOME"]  # one person's server: their own HOME
    # ours, and the node rank every command gets (README "Multi-node jobs")
    assert {k for k in env if k.startswith("MODELYARD_")} == {"MODELYARD_JOB_ID", "MODELYARD_ATTEMPT",
                                                             "MODELYARD_OUTPUT_DIR", "MODELYARD_NODE_RANK",
                                                             "MODELYARD_NNODES", "MODELYARD_TENSORBOARD_DIR"}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # a zombie still counts for kill(); look at the states
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def test_a_killed_supervisor_takes_its_commands_whole_group_with_it(tmp_path: Path) -> None:
    # the command and two children of it: PDEATHSIG reaches the command, the guard the rest
    pids = tmp_path / "pids"
    script = f"sleep 300 & sleep 300 & echo $$ > {pids}.tmp && mv {pids}.tmp {pids}; wait"
    config = SupervisorConfig(job_id="orphan", argv=["/bin/sh", "-c", script], run_dir=tmp_path / "run",
                              sandbox=Sandbox(memory=200 * MiB))
    (tmp_path / "config.json").write_text(config.model_dump_json())
    sup = subprocess.Popen([sys.executable, "-m", "modelyard.supervisor", str(tmp_path / "config.json")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(pids.exists, timeout=30, what="the job to start")
        pgid = int(pids.read_text())
        assert _group_alive(pgid)
        sup.send_signal(signal.SIGKILL)
        sup.wait(10)
        wait_for(lambda: not _group_alive(pgid), timeout=10, what="the job's group to die with its supervisor")
        wait_for(lambda: not any(d.name.startswith("orphan-1-") for d in job_cgroups()), timeout=10,
                 what="the guard to remove the job's cgroup")
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()


# -- through the platform: the scheduler's cores, and the reason as the server keeps it ------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("limits") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=8G"}).start()
    yield srv
    srv.stop()


HOLD = ("import json, os, time; print(json.dumps({'cores': sorted(os.sched_getaffinity(0))}), flush=True); "
        "time.sleep(30)")


def test_two_concurrent_jobs_get_distinct_cores(server: ServerProcess) -> None:
    with server.client() as c:
        jobs = [c.post("/jobs", json={"spec": {"command": [PY, "-c", HOLD], "resources": {"cpus": 1}}}).json()
                for _ in range(2)]

        def seen(job_id: int) -> list[int] | None:
            lines = [ln["text"] for ln in all_logs(c, job_id) if ln["text"].startswith("{")]
            return json.loads(lines[0])["cores"] if lines else None

        cores = [wait_for(lambda j=j: seen(j["id"]), timeout=30, what="the job's cores") for j in jobs]
        for j in jobs:
            c.post(f"/jobs/{j['id']}/stop")
    assert all(len(cs) == 1 for cs in cores) and cores[0] != cores[1]


def test_out_of_memory_is_the_jobs_message_and_is_not_retried(server: ServerProcess) -> None:
    spec = {"command": [PY, "-c", ALLOCATE], "resources": {"memory": "100M", "cpus": 1}, "retries": 2}
    with server.client() as c:
        job = c.post("/jobs", json={"spec": spec}).json()
        done = wait_state(c, job["id"], "failed")
    assert done["message"] == "out of memory (limit 100M)"
    assert len(done["attempts"]) == 1
