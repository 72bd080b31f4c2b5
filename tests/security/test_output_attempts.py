"""Outputs per attempt cannot be reached past their owner or out of their attempt.

Alice's job has two attempts with outputs of their own. Bob asking for them by attempt,
or for the model only, gets exactly the 404 of a job nobody has; alice's own path that
climbs out of attempt 1 (into attempt 2, or into another job's folder) never yields a byte
of what lies there. In-process: the scheduler never runs, attempts are made through the
store's own transitions.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from inproc import InProc, in_process

from modelyard.artifacts.keys import attempt_output_prefix
from modelyard.db import jobs as store_jobs
from modelyard.jobs.states import TerminationReason

SECRET = b"attempt-2-private-weights"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProc, str, str, int]]:
    with in_process(tmp_path_factory.mktemp("attempts") / "home") as ip:
        alice, bob = ip.new_user("alice"), ip.new_user("bob")
        job = ip.client.post("/api/v1/jobs", headers=ip.auth(alice), json={"spec": {"command": ["true"]}}).json()
        db, storage = ip.platform.db, ip.platform.storage
        for number in (1, 2):
            placed = store_jobs.place(db, job["id"], token=f"t{number}", executor="local")
            assert placed is not None and placed[1].number == number
            store_jobs.end_attempt(db, placed[1], TerminationReason.EXIT_NONZERO, exit_code=1)
            if number == 1:
                store_jobs.requeue(db, store_jobs.get_job(db, job["id"]))
        storage.put_bytes(b"ckpt 1", f"{attempt_output_prefix(job['id'], 1)}/ckpt.pt")
        storage.put_bytes(SECRET, f"{attempt_output_prefix(job['id'], 2)}/final/model.pt")
        yield ip, alice, bob, job["id"]


@pytest.mark.parametrize("url", [
    "/api/v1/jobs/{id}/outputs?attempt=1", "/api/v1/jobs/{id}/outputs?final=true",
    "/api/v1/jobs/{id}/outputs?attempt=2&final=true", "/api/v1/jobs/{id}/outputs/ckpt.pt?attempt=1",
    "/api/v1/jobs/{id}/outputs/final/model.pt", "/api/v1/jobs/{id}/outputs/final/model.pt?attempt=2",
])
def test_another_users_attempt_outputs_answer_as_a_job_nobody_has(world, url: str) -> None:  # type: ignore[no-untyped-def]
    ip, alice, bob, job_id = world
    theirs = ip.client.get(url.format(id=job_id), headers=ip.auth(bob))
    nobody = ip.client.get(url.format(id=999999), headers=ip.auth(bob))
    assert theirs.status_code == nobody.status_code == 404, theirs.text
    assert theirs.json()["error"]["message"].replace(str(job_id), "999999") == nobody.json()["error"]["message"]
    assert SECRET not in theirs.content
    assert ip.client.get(url.format(id=job_id), headers=ip.auth(alice)).status_code == 200  # the path was real


@pytest.mark.parametrize("path", [
    "../../2/outputs/final/model.pt", "..%2F..%2F2%2Foutputs%2Ffinal%2Fmodel.pt", "./../2/outputs/final/model.pt",
    "%2E%2E/%2E%2E/2/outputs/final/model.pt", "/jobs/{id}/attempts/2/outputs/final/model.pt",
])
def test_a_path_never_climbs_out_of_the_attempt_it_names(world, path: str) -> None:  # type: ignore[no-untyped-def]
    ip, alice, _bob, job_id = world
    r = ip.client.get(f"/api/v1/jobs/{job_id}/outputs/{path.format(id=job_id)}?attempt=1", headers=ip.auth(alice))
    assert r.status_code in (404, 422), (path, r.status_code)
    assert SECRET not in r.content


def test_an_attempt_the_job_does_not_have_is_not_found_and_a_bad_one_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    ip, alice, _bob, job_id = world
    r = ip.client.get(f"/api/v1/jobs/{job_id}/outputs?attempt=3", headers=ip.auth(alice))
    assert r.status_code == 404 and "attempt 3" in r.json()["error"]["message"]
    for bad in ("-1", "x", "99999999999999999999"):
        r = ip.client.get(f"/api/v1/jobs/{job_id}/outputs?attempt={bad}", headers=ip.auth(alice))
        assert r.status_code == 422 and r.json()["error"]["field"].endswith("attempt"), r.text


def test_a_clone_with_new_code_is_refused_a_key_that_is_not_a_snapshot(world) -> None:  # type: ignore[no-untyped-def]
    ip, alice, _bob, job_id = world
    for key in ("../token", "jobs/1/attempts/2/outputs/final/model.pt", "snapshots/x.tar.gz"):
        r = ip.client.post(f"/api/v1/jobs/{job_id}/clone", json={"resume": True, "snapshot": key},
                           headers=ip.auth(alice))
        assert r.status_code == 422 and r.json()["error"]["field"] == "snapshot", r.text
