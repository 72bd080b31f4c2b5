"""A plain user's hostile job on a shared server (MODELYARD_JOB_UIDS): nothing of the server's or of
another user's is within its reach.

alice's job runs with a secret in its environment and a file in its outputs;
bob's job, told every path and id it could want, tries to read the admin
token, the database, alice's supervisor.json (her attempt's report token), her
run folder and log, her process's /proc/PID/environ, and to report for her
attempt. With isolation each try fails. The same probes on a server without
it (the users created with ``no_isolation``) succeed where the issue found
they did, so this test fails if the isolation is ever lost.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import wait_for
from servers import ServerProcess
from test_e2e_jobs import all_logs, tar_gz, wait_state

SECRET = "alice-wandb-7f3e9"
PY = "/usr/bin/python3"  # any uid can run Debian's Python; the pyenv one lives under /root (0700)

VICTIM = ["/bin/sh", "-c", 'echo weights > "$MODELYARD_OUTPUT_DIR/model.bin"; echo ready; exec sleep 120']

HOSTILE = r"""
import json, os, sys, urllib.error, urllib.request
home, run, attempt, url = sys.argv[1:5]
tries = {}
def attempt_to(name, fn):
    try:
        tries[name] = ["ok", repr(fn())[:300]]
    except OSError as e:
        tries[name] = ["denied", type(e).__name__]
def read(path):
    with open(path, "rb") as f:
        return f.read(300)
attempt_to("token", lambda: read(f"{home}/token"))
attempt_to("database", lambda: read(f"{home}/modelyard.db"))
attempt_to("config", lambda: read(f"{run}/supervisor.json"))
attempt_to("run_log", lambda: read(f"{run}/log.txt"))
attempt_to("run_folder", lambda: os.listdir(f"{run}/output"))
attempt_to("outputs", lambda: read(f"{run}/output/model.bin"))
attempt_to("artifacts", lambda: os.listdir(f"{home}/artifacts"))
def environ():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if SECRET.encode() in f.read():
                    return pid
        except OSError:
            pass
    raise PermissionError("no readable environment holds the secret")
SECRET = sys.argv[5]
attempt_to("environ", environ)
try:
    token = json.loads(open(f"{run}/supervisor.json").read())["token"]
except OSError:
    token = "my_guessed-token"
body = json.dumps({"seq": 1, "logs": [[0, "stdout", "forged by bob"]]}).encode()
req = urllib.request.Request(f"{url}/api/v1/attempts/{attempt}/report", data=body, method="POST",
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
try:
    tries["report"] = ["status", urllib.request.urlopen(req, timeout=10).status]
except urllib.error.HTTPError as e:
    tries["report"] = ["status", e.code]
# what /proc still shows of other uids' processes (README, "Security model")
others = [p for p in filter(str.isdigit, os.listdir("/proc")) if os.stat(f"/proc/{p}").st_uid != os.getuid()]
tries["cmdline_visible"] = ["info", any(read(f"/proc/{p}/cmdline") for p in others if os.path.exists(f"/proc/{p}"))]
tries["whoami"] = ["info", [os.getuid(), os.getgid(), os.environ.get("HOME")]]
print("PROBES " + json.dumps(tries))
"""


def shared_home() -> Path:
    # not under pytest's tmp (0700): jobs of other uids must be able to walk down to their folders
    return Path(tempfile.mkdtemp(prefix="modelyard-shared-", dir="/tmp"))


def user(admin: httpx.Client, name: str, **flags: Any) -> str:
    r = admin.post("/users", json={"name": name, **flags})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def submit(c: httpx.Client, spec: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    return r.json()


def probe(isolated: bool) -> tuple[dict[str, list[Any]], ServerProcess]:
    """Run alice's victim and bob's hostile job on a fresh server; bob's findings."""
    home = shared_home()
    env = {"MODELYARD_CAPACITY": "cpus=4,memory=8G"}
    if isolated:
        env["MODELYARD_JOB_UIDS"] = "61000-61999"
    server = ServerProcess(home, env=env).start()
    try:
        with server.client() as admin:
            flags = {} if isolated else {"no_isolation": True}
            alice_token, bob_token = user(admin, "alice", **flags), user(admin, "bob", **flags)
        with server.client(alice_token) as alice, server.client(bob_token) as bob:
            victim = submit(alice, {"command": VICTIM, "env": {"WANDB_API_KEY": SECRET}})
            wait_state(alice, victim["id"], "running")
            wait_for(lambda: any(ln["text"] == "ready" for ln in all_logs(alice, victim["id"])), timeout=30,
                     what="alice's job to be ready")
            attempt_id = 1  # the first attempt on a fresh server: ids are small and easy to guess
            run = home / "runs" / f"{victim['id']}-1"
            hostile = submit(bob, {"command": [PY, "-c", HOSTILE, str(home), str(run), str(attempt_id),
                                               server.url, SECRET]})
            wait_state(bob, hostile["id"], "succeeded", "failed")
            lines = [ln["text"] for ln in all_logs(bob, hostile["id"])]
            found = [ln for ln in lines if ln.startswith("PROBES ")]
            assert found, lines
            victim_logs = [ln["text"] for ln in all_logs(alice, victim["id"])]
            alice.post(f"/jobs/{victim['id']}/stop")
            own = own_job(bob)
        tries = json.loads(found[-1].removeprefix("PROBES "))
        tries["forged_line_stored"] = ["info", "forged by bob" in victim_logs]
        tries["own_job"] = ["info", own]
        return tries, server
    finally:
        server.stop()


OWN = b"""
import os
open(os.path.join(os.environ["MODELYARD_OUTPUT_DIR"], "model.bin"), "w").write(open("weights.txt").read())
open(os.path.join(os.environ["HOME"], ".cache-test"), "w").write("mine")
print("own job ok")
"""


def own_job(c: httpx.Client) -> dict[str, Any]:
    """What a job may do with what is its own: read its code, write its outputs and its HOME."""
    key = c.post("/snapshots", content=tar_gz({"train.py": OWN, "weights.txt": b"w1"})).json()["key"]
    job = c.post("/jobs", json={"spec": {"command": [PY, "train.py"]}, "snapshot": key}).json()
    done = wait_state(c, job["id"], "succeeded", "failed")
    return {"state": done["state"], "model": c.get(f"/jobs/{job['id']}/outputs/model.bin").text,
            "logs": [ln["text"] for ln in all_logs(c, job["id"])]}


@pytest.fixture(scope="module")
def isolated() -> Iterator[dict[str, list[Any]]]:
    tries, server = probe(isolated=True)
    yield tries
    shutil.rmtree(server.home, ignore_errors=True)


@pytest.fixture(scope="module")
def shared() -> Iterator[dict[str, list[Any]]]:
    tries, server = probe(isolated=False)
    yield tries
    shutil.rmtree(server.home, ignore_errors=True)


READS = ["token", "database", "config", "run_log", "run_folder", "outputs", "artifacts", "environ"]


@pytest.mark.parametrize("what", READS)
def test_a_plain_users_job_cannot_read_it(isolated: dict[str, list[Any]], what: str) -> None:
    assert isolated[what][0] == "denied", isolated[what]


def test_nor_report_for_another_attempt(isolated: dict[str, list[Any]]) -> None:
    assert isolated["report"] == ["status", 401]
    assert isolated["forged_line_stored"] == ["info", False]


def test_it_runs_as_an_unprivileged_uid_of_the_range_with_a_home_of_its_own(isolated: dict[str, list[Any]]) -> None:
    uid, gid, home = isolated["whoami"][1]
    assert 61000 <= uid <= 61999 and gid == uid
    assert home.endswith("/home") and "/runs/" in home


def test_its_own_code_outputs_and_home_are_its_own(isolated: dict[str, list[Any]]) -> None:
    own = isolated["own_job"][1]
    assert own["state"] == "succeeded", own["logs"]
    assert own["model"] == "w1"  # written as its uid, synced by the root supervisor


@pytest.mark.parametrize("what", ["token", "database", "config", "run_folder", "outputs", "environ"])
def test_without_isolation_the_same_probes_succeed(shared: dict[str, list[Any]], what: str) -> None:
    # the control: what the issue found, so a pass above is the isolation's doing, not a broken probe
    assert shared[what][0] == "ok", shared[what]


def test_without_isolation_a_stolen_token_speaks_for_the_attempt(shared: dict[str, list[Any]]) -> None:
    assert shared["report"][1] not in (401, 403)
    assert shared["whoami"][1][0] == 0
