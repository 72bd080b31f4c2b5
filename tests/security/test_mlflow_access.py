"""The MLflow API's walls: a user reaches only their own runs and experiments (another's answers as
a ghost's, 404), and a job's run token only its own run, while its attempt lives, never as admin; it
names experiments (set_experiment) in its owner's namespace only, to put its own run in one."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from auth_helpers import App, client, make_app, user

from modelyard.db import jobs as store_jobs
from modelyard.db.schema import metric_chunks
from modelyard.db.users import get_user_by_name, hash_token
from modelyard.jobs import JobSpec, TerminationReason
from modelyard.jobs.run_token import run_token

API = "/api/2.0/mlflow"


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    made = make_app(tmp_path, database_url)
    yield made
    made[1].close()


def call(c: Any, path: str, body: dict[str, Any] | None = None, *, get: bool = False) -> Any:
    return c.get(API + path, params=body) if get else c.post(API + path, json=body or {})


def running_job(app: App, owner: str, n: int = 1) -> tuple[int, int, str]:
    """A job of ``owner``'s with a running attempt, placed through the real transitions; its run token."""
    _app, platform = app
    u = get_user_by_name(platform.db, owner)
    assert u is not None
    job = platform.submit(u, JobSpec(command=["true"]), snapshot=None)
    report_token = f"report-token-{owner}-{n}"
    placed = store_jobs.place(platform.db, job.id, token=report_token, executor="local")
    assert placed is not None
    _job, attempt = placed
    with platform.db.write() as conn:
        store_jobs.mark_running(conn, attempt, now=attempt.created_at)
    return job.id, attempt.id, run_token(attempt.id, hash_token(report_token))


def test_another_users_runs_and_experiments_answer_as_ghosts(app: App) -> None:
    fastapi_app, platform = app
    alice = client(fastapi_app, token=user(platform, "alice"))
    bob = client(fastapi_app, token=user(platform, "bob"))
    exp = call(alice, "/experiments/create", {"name": "secret"}).json()["experiment_id"]
    run = call(alice, "/runs/create", {"experiment_id": exp}).json()["run"]["info"]["run_id"]
    assert call(alice, "/runs/log-metric", {"run_id": run, "key": "m", "value": 1, "timestamp": 1, "step": 0}).status_code == 200

    for target, ghost in ((run, "987654"),):
        for path, body, get in (
            ("/runs/get", {"run_id": target}, True),
            ("/metrics/get-history", {"run_id": target, "metric_key": "m"}, True),
            ("/runs/log-metric", {"run_id": target, "key": "m", "value": 2, "timestamp": 1, "step": 1}, False),
            ("/runs/log-batch", {"run_id": target, "params": [{"key": "p", "value": "x"}]}, False),
            ("/runs/log-parameter", {"run_id": target, "key": "p", "value": "x"}, False),
            ("/runs/set-tag", {"run_id": target, "key": "t", "value": "x"}, False),
            ("/runs/delete-tag", {"run_id": target, "key": "mlflow.user"}, False),
            ("/runs/update", {"run_id": target, "status": "KILLED"}, False),
            ("/runs/delete", {"run_id": target}, False),
            ("/runs/log-inputs", {"run_id": target, "datasets": []}, False),
        ):
            theirs, none = call(bob, path, body, get=get), call(bob, path, {**body, "run_id": ghost}, get=get)
            assert theirs.status_code == none.status_code == 404, (path, theirs.text)
            assert theirs.json()["error_code"] == none.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
            assert theirs.json()["message"].replace(target, ghost) == none.json()["message"]
    for path, body, get in (("/experiments/get", {"experiment_id": exp}, True),
                            ("/experiments/update", {"experiment_id": exp, "new_name": "mine"}, False),
                            ("/experiments/delete", {"experiment_id": exp}, False),
                            ("/experiments/set-experiment-tag", {"experiment_id": exp, "key": "k", "value": "v"}, False),
                            ("/runs/create", {"experiment_id": exp}, False),
                            ("/runs/search", {"experiment_ids": [exp]}, False)):
        r = call(bob, path, body, get=get)
        assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", (path, r.text)
    assert call(bob, "/experiments/get-by-name", {"experiment_name": "secret"}, get=True).status_code == 404
    assert call(bob, "/runs/search", {"experiment_ids": ["0"]}).json().get("runs", []) == []
    assert [e["name"] for e in call(bob, "/experiments/search", {}).json()["experiments"]] == ["Default"]
    # and nothing of alice's changed
    got = call(alice, "/runs/get", {"run_id": run}, get=True).json()["run"]
    assert got["info"]["status"] == "RUNNING" and got["data"]["params"] == []
    assert call(alice, "/experiments/get", {"experiment_id": exp}, get=True).json()["experiment"]["name"] == "secret"


def test_a_jobs_run_token_reaches_its_own_run_only_while_its_attempt_lives(app: App) -> None:
    fastapi_app, platform = app
    alice = client(fastapi_app, token=user(platform, "alice"))
    other = call(alice, "/runs/create", {}).json()["run"]["info"]["run_id"]
    job_id, attempt_id, token = running_job(app, "alice")
    job = client(fastapi_app, token=token)

    assert call(job, "/runs/get", {"run_id": str(job_id)}, get=True).status_code == 200
    r = call(job, "/runs/log-metric", {"run_id": str(job_id), "key": "loss", "value": 1, "timestamp": 1000, "step": 0})
    assert r.status_code == 200
    with platform.db.read() as conn:  # its points are its attempt's
        assert conn.execute(metric_chunks.select()).first().attempt_id == attempt_id
    for path, body, get in (("/runs/get", {"run_id": other}, True),
                            ("/runs/log-metric", {"run_id": other, "key": "m", "value": 1, "timestamp": 1}, False),
                            ("/runs/set-tag", {"run_id": other, "key": "t", "value": "x"}, False),
                            ("/runs/update", {"run_id": other, "status": "FAILED"}, False)):
        r = call(job, path, body, get=get)
        assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", (path, r.text)
    for path, body in (("/runs/create", {}), ("/runs/delete", {"run_id": str(job_id)})):
        r = call(job, path, body)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", (path, r.text)
    found = call(job, "/runs/search", {"experiment_ids": ["0"]}).json()["runs"]
    assert [r["info"]["run_id"] for r in found] == [str(job_id)]
    # its client may not end the job: the process's exit decides
    call(job, "/runs/update", {"run_id": str(job_id), "status": "FAILED", "end_time": 5})
    assert store_jobs.get_job(platform.db, job_id).state.value == "running"
    assert call(alice, "/runs/get", {"run_id": other}, get=True).json()["run"]["info"]["status"] == "RUNNING"

    attempt = store_jobs.get_attempt(platform.db, attempt_id)
    assert attempt is not None
    store_jobs.end_attempt(platform.db, attempt, TerminationReason.EXIT_ZERO, exit_code=0)
    r = call(job, "/runs/get", {"run_id": str(job_id)}, get=True)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"


def test_an_admins_jobs_token_is_not_admin(app: App) -> None:
    fastapi_app, platform = app
    alice = client(fastapi_app, token=user(platform, "alice"))
    admin = client(fastapi_app, token=user(platform, "root", admin=True))
    run = call(alice, "/runs/create", {}).json()["run"]["info"]["run_id"]
    assert call(admin, "/runs/get", {"run_id": run}, get=True).status_code == 200  # admins see all, as in /api/v1
    _job_id, _attempt, token = running_job(app, "root")
    job = client(fastapi_app, token=token)
    for path, body, get in (("/runs/get", {"run_id": run}, True),
                            ("/runs/log-batch", {"run_id": run, "tags": [{"key": "k", "value": "v"}]}, False)):
        r = call(job, path, body, get=get)
        assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", (path, r.text)


def test_a_jobs_token_names_experiments_of_its_owner_only_and_moves_its_own_run_only(app: App) -> None:
    fastapi_app, platform = app
    alice = client(fastapi_app, token=user(platform, "alice"))
    bob = client(fastapi_app, token=user(platform, "bob"))
    bobs = call(bob, "/experiments/create", {"name": "mnist", "tags": [{"key": "k", "value": "bob"}]}).json()
    bob_run = call(bob, "/runs/create", {"experiment_id": bobs["experiment_id"]}).json()["run"]["info"]["run_id"]
    other = call(alice, "/experiments/create", {"name": "other"}).json()["experiment_id"]
    other_run = call(alice, "/runs/create", {"experiment_id": other}).json()["run"]["info"]["run_id"]
    job_id, _attempt, token = running_job(app, "alice")
    second_id, _attempt2, second_token = running_job(app, "alice", 2)
    job, second = client(fastapi_app, token=token), client(fastapi_app, token=second_token)

    # set_experiment("mnist") as the client calls it: bob's "mnist" is not alice's, so it is made in hers
    r = call(job, "/experiments/get-by-name", {"experiment_name": "mnist"}, get=True)
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", r.text
    mine = call(job, "/experiments/create", {"name": "mnist"}).json()["experiment_id"]
    assert mine != bobs["experiment_id"]
    got = call(job, "/experiments/get", {"experiment_id": mine}, get=True).json()["experiment"]
    assert got["name"] == "mnist" and got["tags"] == []
    assert store_jobs.get_job(platform.db, job_id).experiment_id == int(mine)
    r = call(second, "/experiments/create", {"name": "a\0b"})  # no column holds a NUL: refused, not a 500
    assert r.status_code == 400 and "NUL" in r.json()["message"], r.text
    r = call(job, "/experiments/create", {"name": "mnist"})  # as another rank of the job, a moment late
    assert r.status_code == 400 and r.json()["error_code"] == "RESOURCE_ALREADY_EXISTS", r.text
    assert call(job, "/runs/get", {"run_id": str(job_id)}, get=True).json()["run"]["info"]["experiment_id"] == mine
    # bob's experiment and run: untouched and unseen
    for path, body in (("/experiments/get", {"experiment_id": bobs["experiment_id"]}),
                       ("/runs/get", {"run_id": bob_run})):
        r = call(job, path, body, get=True)
        assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", (path, r.text)
    theirs = call(bob, "/experiments/get", {"experiment_id": bobs["experiment_id"]}, get=True).json()["experiment"]
    assert theirs["tags"] == [{"key": "k", "value": "bob"}]
    assert call(bob, "/runs/get", {"run_id": bob_run}, get=True).json()["run"]["info"]["experiment_id"] == \
        bobs["experiment_id"]
    # naming it moved its own run only: the other job, and alice's runs, are where they were
    assert store_jobs.get_job(platform.db, second_id).experiment_id is None
    assert store_jobs.get_job(platform.db, int(other_run)).experiment_id == int(other)
    # a run in an experiment stays: naming another answers it (the client then says they differ), and
    # creating one is refused, saying why
    assert call(job, "/experiments/get-by-name", {"experiment_name": "other"}, get=True).status_code == 200
    r = call(job, "/experiments/create", {"name": "third"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_STATE", r.text
    assert "'mnist'" in r.json()["message"] and "stays" in r.json()["message"]
    assert store_jobs.get_job(platform.db, job_id).experiment_id == int(mine)
    assert call(alice, "/experiments/get-by-name", {"experiment_name": "third"}, get=True).status_code == 404
    # and it reads no other experiment's data, searches past its own run nothing, changes no experiment
    for path, body, get in (("/experiments/get", {"experiment_id": other}, True),
                            ("/runs/search", {"experiment_ids": [other]}, False),
                            ("/runs/get", {"run_id": other_run}, True)):
        r = call(job, path, body, get=get)
        assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", (path, r.text)
    assert [x["info"]["run_id"] for x in call(job, "/runs/search", {"experiment_ids": [mine]}).json()["runs"]] == \
        [str(job_id)]
    assert [e["name"] for e in call(job, "/experiments/search", {}).json()["experiments"]] == ["mnist"]
    for path, body in (("/experiments/update", {"experiment_id": mine, "new_name": "x"}),
                       ("/experiments/delete", {"experiment_id": mine}),
                       ("/experiments/set-experiment-tag", {"experiment_id": mine, "key": "k", "value": "v"}),
                       ("/runs/create", {"experiment_id": mine})):
        r = call(job, path, body)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", (path, r.text)
    # a deleted experiment is answered as it is (the client says to restore it); the run stays in Default
    gone = call(alice, "/experiments/create", {"name": "gone"}).json()["experiment_id"]
    assert call(alice, "/experiments/delete", {"experiment_id": gone}).status_code == 200
    r = call(second, "/experiments/get-by-name", {"experiment_name": "gone"}, get=True)
    assert r.json()["experiment"]["lifecycle_stage"] == "deleted", r.text
    assert store_jobs.get_job(platform.db, second_id).experiment_id is None
