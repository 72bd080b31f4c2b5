"""A hostile job under ``--image``: what a bare job is probed for, tried from inside a container.

A victim job runs (with a secret in its environment and a file in its outputs)
while the hostile one, told every host path it could want, tries to read the
server's token and database, the victim's supervisor.json and outputs, and any
process's environment. Each try must fail, and the test asserts that it did,
so it fails if the container ever mounts more than the job's own folders.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import psutil
import pytest

from conftest import wait_for
from images import python_image, remove_containers_under
from servers import ServerProcess
from test_e2e_jobs import all_logs, wait_state

SECRET = "victim-secret-5a1f"

HOSTILE = r"""
import json, os
tries = {}
for name, path in json.loads(os.environ["TARGETS"]).items():
    try:
        with open(path, "rb") as f:
            tries[name] = "READ " + f.read(200).decode(errors="replace")
    except OSError as e:
        tries[name] = type(e).__name__
environs = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        environs.append(open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
    except OSError:
        pass
mounts = [line.split()[4] for line in open("/proc/self/mountinfo")]
print(json.dumps({"tries": tries, "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                  "secret_seen": any(os.environ["NEEDLE"][::-1] in e for e in environs), "mounts": mounts,
                  "listing": sorted(os.listdir("/"))}))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    python_image()  # built (or reused) before the server starts, so it inherits CONTAINERS_CONF
    srv = ServerProcess(tmp_path_factory.mktemp("hostile-image") / "home",
                        env={"MODELYARD_CAPACITY": "cpus=2,memory=8G"}).start()
    yield srv
    srv.stop()
    remove_containers_under(srv.home)


def submit(c: httpx.Client, spec: dict) -> dict:
    r = c.post("/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    return r.json()


def test_a_hostile_image_job_reaches_only_its_own_mounts(server: ServerProcess) -> None:
    image = python_image()
    with server.client() as c:
        victim = submit(c, {"command": ["python3", "-c", "import os, time\nopen(os.environ['MODELYARD_OUTPUT_DIR']"
                                        " + '/weights.bin', 'w').write('victim weights')\nprint('up', flush=True)\n"
                                        "time.sleep(120)"],
                            "image": image, "env": {"VICTIM_KEY": SECRET}})
        wait_for(lambda: any(x["text"] == "up" for x in all_logs(c, victim["id"])), timeout=90, what="the victim")
        victim_run = server.home / "runs" / f"{victim['id']}-1"
        # the runtime's client gets variables by name: no value in a command line that `ps` shows to anyone
        lines = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
        assert any(f"modelyard-{victim['id']}-1" in x for x in lines), "the victim's podman client is running"
        assert not any(SECRET in x for x in lines)
        targets = {"token": server.home / "token", "database": server.home / "modelyard.db",
                   "victim_config": victim_run / "supervisor.json",
                   "victim_output": victim_run / "output" / "weights.bin"}
        for name in ("token", "database", "victim_config", "victim_output"):
            assert targets[name].exists(), f"the probe's target {name} must exist on the host"
        hostile = submit(c, {"command": ["python3", "-c", HOSTILE], "image": image,
                             "env": {"TARGETS": json.dumps({k: str(v) for k, v in targets.items()}),
                                     "NEEDLE": SECRET[::-1]}})  # reversed: its own environ must not match
        done = wait_state(c, hostile["id"], "succeeded", "failed", timeout=90)
        lines = [x["text"] for x in all_logs(c, hostile["id"])]
        assert done["state"] == "succeeded", lines
        seen = json.loads(next(x for x in lines if x.startswith('{"tries"')))
        assert c.get(f"/jobs/{victim['id']}").json()["state"] == "running"  # it was there all along
        assert c.post(f"/jobs/{victim['id']}/stop").status_code == 200
        wait_state(c, victim["id"], "stopped", timeout=60)
    for name, result in seen["tries"].items():
        assert not result.startswith("READ"), f"the hostile job read {name}: {result}"
    assert seen["secret_seen"] is False
    assert max(seen["pids"]) < 100, seen["pids"]  # its own pid namespace: no host process to look at
    ours = sorted(m for m in seen["mounts"] if m.startswith("/modelyard"))
    assert ours == ["/modelyard/code", "/modelyard/output"], seen["mounts"]
    assert not any(str(server.home) in m or m.startswith(("/work", "/root", "/tmp/")) for m in seen["mounts"])
    assert "work" not in seen["listing"]
