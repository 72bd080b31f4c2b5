"""supervisor/container.py's pure parts: the runtime's argv from a LaunchSpec, names, limits,
and runtime detection against this machine's real binaries (a docker client with no engine)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from images import apt_mirror, use_test_containers_conf
from modelyard.jobs.launch import Environment, LaunchSpec, RunAs, Sandbox
from modelyard.supervisor.container import (
    Mounts, container_env, container_name, gpu_flags, limit_text, pick_runtime, run_argv, shm_size,
)
from modelyard.supervisor.runner import StartFailed


def spec(**kw: object) -> LaunchSpec:
    base: dict = {"job_id": "7", "attempt": 2, "argv": ["python3", "train.py", "--lr", "0.1"],
                  "run_dir": Path("/runs/7-2"), "server_url": "http://127.0.0.1:1",
                  "environment": Environment(image="localhost/img:1")}
    return LaunchSpec(**{**base, **kw})


MOUNTS = Mounts(code=Path("/runs/7-2/code"), output=Path("/runs/7-2/output"), data=Path("/cache/d/v1"))


def pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_the_argv_mounts_names_and_ends_with_image_and_command() -> None:
    argv = run_argv("podman", spec(), name="modelyard-7-2", mounts=MOUNTS, env_names=["B", "A"])
    assert argv[:2] == ["podman", "run"] and "--rm" not in argv  # inspected for OOM, then rm -f
    assert pairs(argv, "--name") == ["modelyard-7-2"] and pairs(argv, "--workdir") == ["/modelyard/code"]
    assert pairs(argv, "--volume") == ["/runs/7-2/code:/modelyard/code", "/runs/7-2/output:/modelyard/output",
                                       "/cache/d/v1:/modelyard/data:ro"]
    assert pairs(argv, "--env") == ["A", "B"]  # names only: values never in a visible argv
    assert argv[argv.index("--") + 1:] == ["localhost/img:1", "python3", "train.py", "--lr", "0.1"]
    assert pairs(argv, "--pull") == ["never"] and "--init" in argv  # pulled beforehand; signals reach the job
    assert "--replace" in argv  # a dead supervisor's leftover of the same name goes
    assert pairs(argv, "--label") == ["modelyard.run_dir=/runs/7-2"]  # whose it is: the server's home
    docker = run_argv("docker", spec(), name="n", mounts=MOUNTS, env_names=[], pidfile=Path("/p"))
    assert "--replace" not in docker and "--pidfile" not in docker  # Podman's flags only
    withpid = run_argv("podman", spec(), name="n", mounts=MOUNTS, env_names=[], pidfile=Path("/runs/7-2/c.pid"))
    assert pairs(withpid, "--pidfile") == ["/runs/7-2/c.pid"]


def test_limits_user_and_shm_come_from_the_sandbox() -> None:
    sb = Sandbox(cpus=1.5, cpuset=[0, 1], memory=4 << 30, run_as=RunAs(uid=61001, gid=61001))
    argv = run_argv("podman", spec(sandbox=sb), name="n", mounts=MOUNTS, env_names=[])
    assert pairs(argv, "--memory") == [str(4 << 30)] and pairs(argv, "--memory-swap") == [str(4 << 30)]
    assert pairs(argv, "--cpus") == [f"{min(1.5, os.cpu_count() or 1):g}"]
    assert pairs(argv, "--cpuset-cpus") == ["0,1"] and pairs(argv, "--user") == ["61001:61001"]
    assert pairs(argv, "--shm-size") == [str(2 << 30)]
    bare = run_argv("podman", spec(), name="n", mounts=MOUNTS, env_names=[])
    assert not pairs(bare, "--memory") and not pairs(bare, "--user") and not pairs(bare, "--cpus")


def test_shm_is_half_the_memory_at_least_64m_and_2g_with_no_limit() -> None:
    assert shm_size(0) == 2 << 30 and shm_size(8 << 30) == 4 << 30 and shm_size(100 << 20) == 64 << 20


def test_gpus_are_exactly_the_jobs_and_renumbered_inside() -> None:
    assert gpu_flags("podman", [2, 5]) == ["--device", "nvidia.com/gpu=2", "--device", "nvidia.com/gpu=5"]
    assert gpu_flags("/usr/bin/docker", [2, 5]) == ["--gpus", "device=2,5"]
    assert gpu_flags("podman", []) == []
    env = container_env(spec(gpus=[2, 5]), {"CUDA_VISIBLE_DEVICES": "2,5", "X": "1"}, MOUNTS)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and env["MODELYARD_HOST_GPUS"] == "2,5" and env["X"] == "1"
    assert env["MODELYARD_OUTPUT_DIR"] == "/modelyard/output" and env["MODELYARD_DATA_DIR"] == "/modelyard/data"
    assert "MODELYARD_RESUME_DIR" not in env


def test_path_and_home_are_the_images_unless_the_job_sets_them() -> None:
    host = {"PATH": "/bin:/usr/bin", "HOME": "/runs/7-2/home", "LANG": "C.UTF-8"}
    assert {"PATH", "HOME"} & container_env(spec(), host, MOUNTS).keys() == set()
    own = container_env(spec(env={"PATH": "/opt/conda/bin:/usr/bin"}), {**host, "PATH": "/opt/conda/bin:/usr/bin"},
                        MOUNTS)
    assert own["PATH"] == "/opt/conda/bin:/usr/bin" and "HOME" not in own and own["LANG"] == "C.UTF-8"


def test_names_follow_job_and_attempt() -> None:
    assert container_name(spec()) == "modelyard-7-2"
    local = container_name(spec(server_url=None, job_id="local"))
    assert local == f"modelyard-local-{os.getpid()}-2"


def test_limit_text_is_what_the_oom_message_shows() -> None:
    assert [limit_text(n) for n in (2 << 30, 100 << 20, 1536 << 20, 512)] == ["2G", "100M", "1.5G", "512B"]


def test_detection_skips_a_docker_client_with_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_containers_conf()
    assert Path(pick_runtime()).name == "podman"
    if shutil.which("docker"):  # this machine: a client at /usr/local/bin/docker, no engine behind it
        with pytest.raises(StartFailed, match="docker: "):
            pick_runtime("docker")
    with pytest.raises(StartFailed, match="use podman or docker"):
        pick_runtime(env={"MODELYARD_CONTAINER_RUNTIME": "lxc"})
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StartFailed, match="podman: not installed; docker: not installed"):
        pick_runtime()


def test_the_test_images_mirror_comes_from_apts_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    assert apt_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert apt_mirror(tmp_path) == "http://old.example/debian"


def test_a_container_gets_torchruns_variables_on_the_hosts_network() -> None:
    from modelyard.jobs.launch import Distributed
    from modelyard.supervisor.config import SupervisorConfig, job_env

    s = SupervisorConfig(**spec(env={"MASTER_PORT": "1"}, distributed=Distributed(
        node_rank=1, nnodes=2, nproc_per_node=4, master_addr="10.0.0.5", master_port=29400)).model_dump())
    inside = container_env(s, job_env(s, base={}), MOUNTS)
    assert {k: inside[k] for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "NNODES",
                                   "LOCAL_WORLD_SIZE", "MODELYARD_NODE_RANK")} == {
        "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29400", "WORLD_SIZE": "8", "NODE_RANK": "1", "NNODES": "2",
        "LOCAL_WORLD_SIZE": "4", "MODELYARD_NODE_RANK": "1"}  # the platform's, over the job's own MASTER_PORT
    argv = run_argv("podman", s, name="n", mounts=MOUNTS, env_names=list(inside))
    assert pairs(argv, "--network") == ["host"]  # MASTER_ADDR is a host address: the rendezvous port is the host's


def test_a_containers_mlflow_client_logs_into_its_own_job() -> None:
    from modelyard.supervisor.config import SupervisorConfig, job_env

    s = SupervisorConfig(**spec(run_token="myrun.3.abc").model_dump())
    inside = container_env(s, job_env(s, base={}), MOUNTS)
    assert {k: inside[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_TOKEN")} == {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "MLFLOW_RUN_ID": "7", "MLFLOW_TRACKING_TOKEN": "myrun.3.abc"}
    argv = run_argv("podman", s, name="n", mounts=MOUNTS, env_names=list(inside))
    assert "MLFLOW_TRACKING_TOKEN" in pairs(argv, "--env") and not any("myrun." in a for a in argv)  # by name only
    assert pairs(argv, "--network") == ["host"]  # the server's 127.0.0.1 is the host's
    assert "MLFLOW_EXPERIMENT_ID" not in inside  # its run is in Default
    into = SupervisorConfig(**spec(run_token="myrun.3.abc", experiment_id="5").model_dump())
    assert container_env(into, job_env(into, base={}), MOUNTS)["MLFLOW_EXPERIMENT_ID"] == "5"
