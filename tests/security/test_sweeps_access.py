"""A sweep is its owner's: another user's answers 404 (show, stop, page) and is in no listing of theirs;
a sweep's trials are its owner's jobs, held to the owner's own queue quota."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inproc import InProc, in_process
from servers import ui_sign_in

from modelyard.jobs import JobState
from modelyard.db import jobs as store_jobs
from modelyard.db.sweeps import trial_jobs

SWEEP = {"name": "alice-private-sweep", "method": "random", "max_trials": 6, "parallel": 3,
         "metric": {"name": "loss"}, "parameters": {"x": {"low": 0, "high": 9}},
         "job": {"command": ["python", "-c", "pass"]}}


@pytest.fixture(scope="module")
def ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProc]:
    with in_process(tmp_path_factory.mktemp("sweeps") / "home") as made:
        yield made


@pytest.fixture(scope="module")
def tokens(ip: InProc) -> dict[str, str]:
    return {"alice": ip.new_user("alice"), "bob": ip.new_user("bob")}


def _sweep(ip: InProc, token: str, **over: Any) -> dict[str, Any]:
    r = ip.client.post("/api/v1/sweeps", json={"spec": {**SWEEP, **over}}, headers=ip.auth(token))
    assert r.status_code == 201, r.text
    return r.json()


def test_another_users_sweep_is_not_there(ip: InProc, tokens: dict[str, str]) -> None:
    sweep = _sweep(ip, tokens["alice"])
    ip.platform.sweeps.step_all()
    bob = ip.auth(tokens["bob"])
    for method, tail in (("GET", ""), ("POST", "/stop")):
        theirs = ip.client.request(method, f"/api/v1/sweeps/{sweep['id']}{tail}", headers=bob)
        nobodys = ip.client.request(method, f"/api/v1/sweeps/999999{tail}", headers=bob)
        assert theirs.status_code == nobodys.status_code == 404, theirs.text
        assert theirs.json()["error"]["message"] == f"sweep {sweep['id']} not found"
        assert nobodys.json()["error"]["message"] == "sweep 999999 not found"
    listed = ip.client.get("/api/v1/sweeps", headers=bob).json()
    assert listed["total"] == 0 and "alice-private" not in str(listed)
    assert ip.client.get(f"/api/v1/sweeps/{sweep['id']}", headers=ip.auth(tokens["alice"])).json()["state"] == "running"
    assert len(trial_jobs(ip.platform.db, sweep["id"])) == 3  # bob's stop stopped nothing
    ui_sign_in(ip.client, tokens["bob"])
    page = ip.client.get(f"/ui/sweeps/{sweep['id']}")
    assert page.status_code == 404 and "alice-private" not in page.text
    assert "alice-private" not in ip.client.get("/ui/sweeps").text


def test_a_sweeps_trials_obey_its_owners_queue_quota(ip: InProc, tokens: dict[str, str]) -> None:
    r = ip.client.put("/api/v1/users/bob/quota", json={"queued": 1}, headers=ip.auth(ip.admin))
    assert r.status_code == 200, r.text
    sweep = _sweep(ip, tokens["bob"], name="bobs")
    for _ in range(3):
        ip.platform.sweeps.step_all()
    jobs = trial_jobs(ip.platform.db, sweep["id"])
    assert len(jobs) == 1 and next(iter(jobs.values())).state is JobState.QUEUED  # parallel 3, but room for 1
    shown = ip.client.get(f"/api/v1/sweeps/{sweep['id']}", headers=ip.auth(tokens["bob"])).json()
    assert shown["state"] == "running"  # waiting for room, not failed
    waiting = [t for t in shown["trials"] if t["job_id"] is None]
    assert len(waiting) == 1  # asked, and given its job once there is room
    job = next(iter(jobs.values()))
    ip.client.post(f"/api/v1/jobs/{job.id}/stop", headers=ip.auth(tokens["bob"]))
    ip.platform.sweeps.step_all()
    jobs = trial_jobs(ip.platform.db, sweep["id"])
    assert len(jobs) == 2 and jobs[waiting[0]["number"]].spec.params == waiting[0]["params"]
    assert sum(j.state is JobState.QUEUED for j in jobs.values()) == 1
    assert all(j.user_id == store_jobs.get_job(ip.platform.db, job.id).user_id for j in jobs.values())


def test_a_bad_sweep_is_refused_naming_what_is_wrong(ip: InProc, tokens: dict[str, str]) -> None:
    for over, field, words in (
        ({"parameters": {"x": {"low": 5, "high": 1}}}, "spec.parameters.x", "low (5) must not be above high (1)"),
        ({"parallel": 0}, "spec.parallel", "greater than or equal to 1"),
        ({"job": {"command": ["python"], "secrets": {"TOKEN": "inline-value"}}}, "spec.job", "stored secrets only"),
        ({"job": {"command": ["python"], "resources": {"gpus": 64}}}, "job.resources.gpus", "asks for 64 gpu"),
        ({"parameters": {"bad name": {"values": [1]}}}, "spec.parameters", "parameter name 'bad name'"),
    ):
        r = ip.client.post("/api/v1/sweeps", json={"spec": {**SWEEP, **over}}, headers=ip.auth(tokens["alice"]))
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert words in error["message"].lower() or words in error["message"], error
        assert field in error["field"], error
        assert "inline-value" not in r.text


def test_a_sweeps_job_gets_nothing_a_submit_would_not(ip: InProc, tokens: dict[str, str]) -> None:
    """The trials' job is checked as a submit's is, before the sweep starts: a plain user's job may not
    run in a folder of the server, nor in another user's private environment."""
    r = ip.client.post("/api/v1/environments", json={"name": "alices-env", "image": "localhost/alice:1"},
                       headers=ip.auth(tokens["alice"]))
    assert r.status_code == 201, r.text
    before = ip.client.get("/api/v1/sweeps", headers=ip.auth(tokens["bob"])).json()["total"]
    for job, status, field in (({"command": ["python"], "workdir": "/etc"}, 403, "job.workdir"),
                               ({"command": ["python"], "environment": "alices-env"}, 404, "job.environment")):
        r = ip.client.post("/api/v1/sweeps", json={"spec": {**SWEEP, "job": job}}, headers=ip.auth(tokens["bob"]))
        assert r.status_code == status and r.json()["error"]["field"] == field, r.text
    assert ip.client.get("/api/v1/sweeps", headers=ip.auth(tokens["bob"])).json()["total"] == before  # none made
