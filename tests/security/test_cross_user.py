"""Every operation of the OpenAPI, asked by one plain user (bob) for another's (alice's) objects.

The operations are read from the app's own OpenAPI, so a new endpoint is in this
test the moment it exists:
- one whose path names an object (``{job_id}``, ``{name}``, ...) answers bob 404, exactly
  as for an object nobody has (``GHOSTS``), while alice, asking the same, does not get a
  404 (so the path really named her object);
- one that names no object is either admin-only (bob gets 403) or open to every user,
  and then its answer to bob holds none of alice's names;
- one this test cannot fill (a path parameter not in ``World.fill``) or classify fails, so
  nobody adds an endpoint without saying how it is kept apart.

In-process (FastAPI's TestClient over the ASGI app): no lifespan, so the scheduler
never runs and alice's objects stay exactly as they were made.
"""
from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from inproc import in_process

from modelyard.config import Settings
from modelyard.jobs.states import TerminationReason
from modelyard.artifacts.keys import output_prefix
from modelyard.server.app import create_app
from modelyard.server.platform import Platform
from modelyard.db import jobs as store_jobs

SECRET = "alice-private-7f3a"  # in every name alice gives: must never reach bob
SECRET_NAME = "alice_private_7f3a"  # her stored secret's name (a secret's name is an env variable's)

# Admin-only operations (bob gets 403 whatever they name); those that name no object need not be here
# if open to every user.
ADMIN_ONLY = {("POST", "/api/v1/users"), ("GET", "/api/v1/users"), ("GET", "/api/v1/users/{name}"),
              ("PUT", "/api/v1/users/{name}/quota"), ("PUT", "/api/v1/users/{name}/admin"),
              ("GET", "/api/v1/users/{name}/tokens"), ("DELETE", "/api/v1/users/{name}/tokens/{token_id}"),
              ("GET", "/api/v1/admin/disk"), ("GET", "/api/v1/admin/removals")}
OPEN_TO_USERS = {
    ("GET", "/api/v1/health"), ("GET", "/api/v1/me"), ("GET", "/api/v1/capacity"),
    ("POST", "/api/v1/snapshots"), ("POST", "/api/v1/snapshots/upload"), ("POST", "/api/v1/jobs"), ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/queue"), ("GET", "/api/v1/metrics/latest"), ("GET", "/api/v1/datasets"),
    ("POST", "/api/v1/datasets"), ("POST", "/api/v1/datasets/uploads"), ("GET", "/api/v1/secrets"),
    ("GET", "/api/v1/environments"), ("POST", "/api/v1/environments"),  # one's own and the admins'; a new one is one's own
    ("GET", "/api/v1/tokens"), ("POST", "/api/v1/tokens"),  # the caller's own tokens; ?all=true is admins' (403)
    ("GET", "/api/v1/webhook-secret"), ("POST", "/api/v1/webhook-secret/rotate"),  # the caller's own key
    # the caller's own notices and profile; another's profile (?user=) is admins' (403)
    ("GET", "/api/v1/notices"), ("POST", "/api/v1/notices/read-all"), ("GET", "/api/v1/profile"),
    ("PATCH", "/api/v1/profile"),
    ("GET", "/api/v1/me/usage"),  # the caller's own quota and usage
    ("POST", "/api/v1/sweeps"), ("GET", "/api/v1/sweeps"),  # a new sweep is the caller's; the listing their own
    ("GET", "/api/v1/models"),  # the caller's own registered models; another's (?owner=) is admins' (403)
    ("POST", "/api/v1/consoles"),  # a new console is the caller's own job
    # never ends, so its answer cannot be read here; test_api checks it shows only one's own jobs
    ("GET", "/api/v1/events/stream"),
}
NEVER_ENDS = {("GET", "/api/v1/events/stream")}
# Name jobs in the query (?ids=1,2): asked for one of alice's jobs, bob gets 404 as for a job nobody has.
JOB_IDS_IN_QUERY = {("GET", "/api/v1/compare"), ("GET", "/api/v1/compare.csv")}
# The name is in the caller's own namespace: bob's PUT makes bob's secret, and alice's stays as it was.
CALLERS_OWN = {("PUT", "/api/v1/secrets/{name}")}
# Only the attempt's own report token speaks for it: a user's token is refused outright.
ATTEMPT_TOKEN_ONLY = {("POST", "/api/v1/attempts/{attempt_id}/report")}


@dataclass
class World:
    client: TestClient
    platform: Platform
    admin: str
    alice: str
    bob: str
    fill: dict[str, str] = field(default_factory=dict)
    markers: list[str] = field(default_factory=lambda: [SECRET, SECRET_NAME])  # alice's: never in bob's answers
    attempt_token: str = ""
    dataset_tar: bytes = b""

    def as_(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def ensure_dataset(self) -> None:
        """Alice's dataset, again if a removal took it (same content: the same version)."""
        up = self.client.post("/api/v1/datasets/uploads", content=self.dataset_tar, headers=self.as_(self.alice))
        assert up.status_code == 201, up.text
        made = self.client.post("/api/v1/datasets", headers=self.as_(self.alice),
                                json={"name": f"{SECRET}-data", "upload": up.json()["upload"]})
        assert made.status_code == 201, made.text
        self.fill.update(name=made.json()["name"], version=made.json()["version"])
        self.fill["dataset_file"] = made.json()["files"][0]["path"]

    def ensure_job(self) -> None:
        """Alice's ended job, again if a removal (DELETE /jobs/{job_id}) took it. Its attempt is placed
        and ended through the store's own transitions: the job's logs and attempts have something real
        to name, and its log stream ends."""
        if "job_id" in self.fill and \
                self.client.get(f"/api/v1/jobs/{self.fill['job_id']}", headers=self.as_(self.alice)).status_code == 200:
            return
        job = self.client.post("/api/v1/jobs", headers=self.as_(self.alice),
                               json={"spec": {"command": ["python", "train.py"], "name": f"{SECRET}-job",
                                              "env": {"TOKEN": SECRET}, "params": {"lr": 0.1}, "tags": [SECRET]}}).json()
        ended = store_jobs.place(self.platform.db, job["id"], gpus=[], token=f"ended-attempt-{job['id']}",
                                 executor="local")
        assert ended is not None
        store_jobs.end_attempt(self.platform.db, ended[1], TerminationReason.EXIT_NONZERO, exit_code=1)
        self.platform.storage.put_bytes(b"weights", f"{output_prefix(job['id'])}/model.bin")
        self.fill["job_id"] = str(job["id"])

    def ensure_environment(self) -> None:
        """Alice's private environment, again if a removal took it."""
        name = f"{SECRET}-env"
        r = self.client.post("/api/v1/environments", headers=self.as_(self.alice),
                             json={"name": name, "image": "localhost/alice-private:1"})
        assert r.status_code in (201, 409), r.text
        self.fill["environment_name"] = name

    def ensure_model(self) -> None:
        """Alice's registered model (made through the MLflow API, where the registry is written)."""
        name = f"{SECRET}-model"
        r = self.client.post("/api/2.0/mlflow/registered-models/create", headers=self.as_(self.alice),
                             json={"name": name, "description": SECRET})
        assert r.status_code == 200 or "RESOURCE_ALREADY_EXISTS" in r.text, r.text
        self.fill["model_name"] = name

    def ensure_secret(self) -> None:
        """Alice's stored secret, again if a removal took it."""
        r = self.client.put(f"/api/v1/secrets/{SECRET_NAME}", json={"value": SECRET}, headers=self.as_(self.alice))
        assert r.status_code == 200, r.text
        self.fill["secret_name"] = SECRET_NAME


def _tar(tmp: Path) -> bytes:
    src = tmp / "rows.csv"
    src.write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(src, arcname="rows.csv")
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("cross")
    with in_process(root / "home") as ip:
        yield from _populate(World(ip.client, ip.platform, ip.admin, ip.new_user("alice"), ip.new_user("bob"),
                                   dataset_tar=_tar(root)))


def _populate(w: World) -> Iterator[World]:
    client, platform = w.client, w.platform
    w.ensure_job()
    # a second job's attempt still lives, for the report endpoint
    live_job = client.post("/api/v1/jobs", headers=w.as_(w.alice), json={"spec": {"command": ["sleep", "1"]}}).json()
    w.attempt_token = "live-attempt-of-alice"
    live = store_jobs.place(platform.db, live_job["id"], gpus=[], token=w.attempt_token, executor="local")
    assert live is not None
    w.fill.update(attempt_id=str(live[1].id), output_file="model.bin", tag=SECRET)
    w.ensure_dataset()
    w.ensure_secret()
    w.ensure_environment()
    w.ensure_model()
    token = client.post("/api/v1/tokens", json={"name": f"{SECRET}-laptop"}, headers=w.as_(w.alice)).json()
    w.fill["ref"] = w.fill["token_id"] = str(token["id"])
    w.fill["user_name"] = "alice"
    notices = client.get("/api/v1/notices", headers=w.as_(w.alice)).json()["notices"]
    w.fill["notice_id"] = str(notices[0]["id"])  # her ended job's
    sweep = client.post("/api/v1/sweeps", headers=w.as_(w.alice), json={"spec": {
        "name": f"{SECRET}-sweep", "method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1]}},
        "job": {"command": ["python", "train.py"]}}})
    assert sweep.status_code == 201, sweep.text
    w.fill["sweep_id"] = str(sweep.json()["id"])
    hook = client.get("/api/v1/webhook-secret", headers=w.as_(w.alice)).json()["secret"]
    w.markers += [token["token"], hook]
    yield w


def _operations() -> list[tuple[str, str]]:
    doc = create_app(_NoPlatform()).openapi()  # the routes' schema needs no platform
    ops = [(m.upper(), path) for path, item in doc["paths"].items() for m in item]
    return sorted(ops, key=lambda op: (op[0] == "DELETE", op))  # removals last: they take objects away


class _NoPlatform:
    """Enough of a platform to build the app and its OpenAPI, without a database."""

    settings = Settings.from_env({"MODELYARD_HOME": "/nonexistent/modelyard-openapi"})


def _param(op: tuple[str, str], name: str) -> str:
    """Which fill a path parameter takes; a name not known here fails the test."""
    if name == "path":
        return "dataset_file" if "/datasets/" in op[1] else "output_file"
    if name == "name" and op[1].startswith("/api/v1/secrets/"):
        return "secret_name"
    if name == "name" and op[1].startswith("/api/v1/environments/"):
        return "environment_name"
    if name == "name" and op[1].startswith("/api/v1/models/"):
        return "model_name"
    if name == "name" and op[1].startswith("/api/v1/users/"):
        return "user_name"
    return name


# What nobody has: another user's object must answer exactly as one of these does.
GHOSTS = {"ref": "999999", "token_id": "999999", "user_name": "nobody-has-this", "job_id": "999999",
          "attempt_id": "999999", "notice_id": "999999", "sweep_id": "999999", "name": "nobody-has-this",
          "tag": "nobody-has-this",
          "version": "abcdef123456",
          "secret_name": "NOBODY_HAS_THIS", "environment_name": "nobody-has-this", "model_name": "nobody-has-this", "dataset_file": "all/data.csv", "output_file": "model.bin"}


def _url(w: World, op: tuple[str, str], fill: dict[str, str] | None = None) -> str:
    fill = w.fill if fill is None else fill
    names = re.findall(r"\{(\w+)\}", op[1])
    unknown = [n for n in names if _param(op, n) not in w.fill]
    assert not unknown, (f"{op[0]} {op[1]}: this test does not know how to fill {unknown}; add them to the "
                         "world fixture so the endpoint is covered")
    return re.sub(r"\{(\w+)\}", lambda m: fill[_param(op, m.group(1))], op[1])


def _as_ghost(w: World, op: tuple[str, str], message: str) -> str:
    """``message`` with alice's values in the path put back as the ghosts' (an error may name what was asked)."""
    for key in sorted(re.findall(r"\{(\w+)\}", op[1]), key=len, reverse=True):
        message = message.replace(w.fill[_param(op, key)], GHOSTS[_param(op, key)])
    return message


BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/v1/secrets/{name}"): {"value": "bobs-own-value"},
    ("POST", "/api/v1/environments"): {"name": "bobs-env", "image": "localhost/bob:1"},
    ("PATCH", "/api/v1/datasets/{name}"): {"visibility": "private"},
    ("POST", "/api/v1/jobs/{job_id}/clone"): {},
    ("POST", "/api/v1/jobs/{job_id}/tags"): {"add": ["bobs-tag"]},
    ("POST", "/api/v1/attempts/{attempt_id}/report"): {"seq": 1},
    ("PATCH", "/api/v1/profile"): {},
    ("PUT", "/api/v1/users/{name}/quota"): {"gpus": 0},
    ("PUT", "/api/v1/users/{name}/admin"): {"admin": True},
}


def _call(w: World, op: tuple[str, str], token: str) -> Any:
    body = BODIES.get(op)
    return w.client.request(op[0], _url(w, op), headers=w.as_(token), json=body)


OPERATIONS = [pytest.param(op, id=f"{op[0]} {op[1]}") for op in _operations()]


@pytest.mark.parametrize("op", OPERATIONS)
def test_a_plain_user_cannot_reach_what_is_not_theirs(world: World, op: tuple[str, str]) -> None:
    if op in ADMIN_ONLY:
        r = _call(world, op, world.bob)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        if "{" in op[1]:  # the same about nobody: 403 too, so not even who exists leaks
            ghost = world.client.request(op[0], _url(world, op, GHOSTS), headers=world.as_(world.bob),
                                         json=BODIES.get(op))
            assert ghost.status_code == 403, ghost.text
    elif "{" in op[1]:
        _names_an_object(world, op)
    elif op in JOB_IDS_IN_QUERY:
        _names_jobs_in_query(world, op)
    else:
        assert op in OPEN_TO_USERS, (f"{op[0]} {op[1]} names no object: add it to ADMIN_ONLY or OPEN_TO_USERS "
                                     "(and check what it shows another user)")
        if op not in NEVER_ENDS:
            r = _call(world, op, world.bob)
            assert r.status_code != 403, r.text[:2000]
            leaked = [m for m in world.markers if m in r.text]
            assert not leaked, r.text[:2000]


def _names_an_object(w: World, op: tuple[str, str]) -> None:
    _ensure(w, op)
    r = _call(w, op, w.bob)
    if op in CALLERS_OWN:
        before = w.client.get(f"/api/v1/secrets/{SECRET_NAME}", headers=w.as_(w.alice)).json()
        assert r.status_code == 200, r.text
        after = w.client.get(f"/api/v1/secrets/{SECRET_NAME}", headers=w.as_(w.alice)).json()
        assert after == before  # bob's PUT made his own; hers did not change
        w.client.delete(f"/api/v1/secrets/{SECRET_NAME}", headers=w.as_(w.bob))
        return
    if op in ATTEMPT_TOKEN_ONLY:
        assert r.status_code == 401, r.text
        owner = w.client.request(op[0], _url(w, op), headers=w.as_(w.attempt_token), json=BODIES.get(op))
        assert owner.status_code not in (401, 404), owner.text
        return
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text[:2000]
    # indistinguishable from asking for what nobody has (but for the names bob himself asked for):
    # not even that alice's object exists leaks
    ghost = w.client.request(op[0], _url(w, op, GHOSTS), headers=w.as_(w.bob), json=BODIES.get(op))
    assert ghost.status_code == 404, ghost.text
    assert _as_ghost(w, op, r.json()["error"]["message"]) == ghost.json()["error"]["message"]
    # the same request as alice reaches her object: the 404 above was about bob, not a bad path
    _ensure(w, op)
    owner = _call(w, op, w.alice)
    assert owner.status_code not in (404, 422), owner.text[:2000]


def _names_jobs_in_query(w: World, op: tuple[str, str]) -> None:
    w.ensure_job()
    own = w.client.post("/api/v1/jobs", headers=w.as_(w.bob), json={"spec": {"command": ["true"]}}).json()["id"]
    for ids in (w.fill["job_id"], f"{own},{w.fill['job_id']}"):  # alone, and hidden behind one of bob's own
        r = w.client.request(op[0], op[1], params={"ids": ids}, headers=w.as_(w.bob))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text[:2000]
        ghost = w.client.request(op[0], op[1], params={"ids": ids.replace(w.fill["job_id"], GHOSTS["job_id"])},
                                 headers=w.as_(w.bob))
        assert ghost.status_code == 404
        assert r.json()["error"]["message"].replace(w.fill["job_id"], GHOSTS["job_id"]) == ghost.json()["error"]["message"]
        assert not [m for m in w.markers if m in r.text]
    owner = w.client.request(op[0], op[1], params={"ids": w.fill["job_id"]}, headers=w.as_(w.alice))
    assert owner.status_code == 200, owner.text[:2000]


def _ensure(w: World, op: tuple[str, str]) -> None:
    """Alice's object again, if an earlier removal took it."""
    if "{job_id}" in op[1]:
        w.ensure_job()
    if op[1].startswith("/api/v1/secrets/"):
        w.ensure_secret()
    elif op[1].startswith("/api/v1/environments/"):
        w.ensure_environment()
    elif op[1].startswith("/api/v1/models/"):
        w.ensure_model()
    elif "{name}" in op[1]:
        w.ensure_dataset()


def test_a_next_round_resumes_only_from_ones_own_job(world: World) -> None:
    """POST /jobs with resume_from (the web form's next round) reads that job's outputs: another's is a 404."""
    spec = {"command": ["true"]}
    world.ensure_job()  # again, if the DELETE /jobs/{job_id} case removed it
    for job_id in (world.fill["job_id"], GHOSTS["job_id"]):
        r = world.client.post("/api/v1/jobs", json={"spec": spec, "resume_from": int(job_id)}, headers=world.as_(world.bob))
        assert r.status_code == 404 and SECRET not in r.text, r.text
    r = world.client.post("/api/v1/jobs", json={"spec": spec, "resume_from": int(world.fill["job_id"])},
                          headers=world.as_(world.alice))
    assert r.status_code == 201 and r.json()["resume_from"] == int(world.fill["job_id"]), r.text
