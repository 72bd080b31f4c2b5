"""The kept answers of db/auth_cache.py never outlive what they say: a token revoked, an admin
demoted, an attempt ended or a job removed is refused (or no longer admin) on the very next request
though its answer was kept; a token expiring while kept is refused from its expiry on; a lookup that
read the database while a revocation was being written keeps nothing; a wrong token is never kept."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from auth_helpers import App, client, make_app, user
from test_mlflow_access import call, running_job

from modelyard.db import removals
from modelyard.db import jobs as store_jobs
from modelyard.db import users as store_users
from modelyard.db.users import add_token, get_user_by_name, hash_token, revoke_token, user_for_token
from modelyard.jobs import TerminationReason


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    made = make_app(tmp_path, database_url)
    yield made
    made[1].close()


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[App]:
    """For what does not depend on the database: the cache's own rules."""
    made = make_app(tmp_path)
    yield made
    made[1].close()


def kept(app: App, kind: str, token: str) -> bool:
    return (kind, hash_token(token)) in app[1].db.auth_cache


def test_a_revoked_token_is_refused_on_the_next_request_though_kept(app: App) -> None:
    fastapi_app, platform = app
    token = user(platform, "alice")
    alice = client(fastapi_app, token=token)
    other = alice.post("/api/v1/tokens", json={"name": "laptop"}).json()
    laptop = client(fastapi_app, token=other["token"])
    run = call(laptop, "/runs/create", {}).json()["run"]["info"]["run_id"]
    metric = {"run_id": run, "key": "m", "value": 1, "timestamp": 1, "step": 0}
    assert call(laptop, "/runs/log-metric", metric).status_code == 200
    assert laptop.get("/api/v1/me").status_code == 200
    assert kept(app, "user", other["token"])

    assert alice.delete(f"/api/v1/tokens/{other['id']}").status_code == 200
    assert not kept(app, "user", other["token"])
    r = call(laptop, "/runs/log-metric", metric)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED", r.text
    assert laptop.get("/api/v1/me").status_code == 401
    assert alice.get("/api/v1/me").status_code == 200  # her other token still speaks for her

    # an admin's revocation, of a token kept a moment ago, is as immediate
    root = client(fastapi_app, token=user(platform, "root", admin=True))
    assert alice.get("/api/v1/me").status_code == 200 and kept(app, "user", token)
    tid = next(t["id"] for t in alice.get("/api/v1/tokens").json()["tokens"])
    assert root.delete(f"/api/v1/users/alice/tokens/{tid}").status_code == 200
    assert alice.get("/api/v1/me").status_code == 401


def test_a_wrong_token_is_never_kept(sqlite_app: App) -> None:
    app = sqlite_app
    fastapi_app, platform = app
    user(platform, "alice")
    for wrong in ("my_" + "x" * 43, "myrun.1.deadbeef"):
        assert call(client(fastapi_app, token=wrong), "/runs/create", {}).status_code == 401
        assert not kept(app, "user", wrong) and not kept(app, "run", wrong)


def test_a_demoted_admin_is_no_admin_on_the_next_request(app: App) -> None:
    fastapi_app, platform = app
    root = client(fastapi_app, token=user(platform, "root", admin=True))
    token = user(platform, "carol", admin=True)
    carol = client(fastapi_app, token=token)
    assert carol.get("/api/v1/users").status_code == 200 and kept(app, "user", token)
    assert root.put("/api/v1/users/carol/admin", json={"admin": False}).status_code == 200
    assert carol.get("/api/v1/users").status_code == 403
    assert carol.get("/api/v1/me").json()["is_admin"] is False


def test_a_token_expiring_while_kept_is_refused_from_its_expiry(sqlite_app: App) -> None:
    app = sqlite_app
    _fastapi_app, platform = app
    user(platform, "alice")
    alice = get_user_by_name(platform.db, "alice")
    assert alice is not None
    now = time.time()
    token = add_token(platform.db, alice.id, name="short", expires_at=now + 1)
    assert user_for_token(platform.db, token, now=now) == alice
    assert kept(app, "user", token)
    assert user_for_token(platform.db, token, now=now + 1) is None


def test_an_ended_attempts_run_token_is_refused_on_the_next_request_though_kept(app: App) -> None:
    """Three jobs of alice's, each attempt ending its own way: its command exits; a stop, then the
    supervisor's word that the command has gone; the job removed."""
    fastapi_app, platform = app
    user(platform, "alice")
    alice = get_user_by_name(platform.db, "alice")
    assert alice is not None
    for end in ("exit", "stop", "remove"):
        job_id, attempt_id, token = running_job(app, "alice")
        job = client(fastapi_app, token=token)
        metric = {"run_id": str(job_id), "key": "loss", "value": 1, "timestamp": 1000, "step": 0}
        assert call(job, "/runs/get", {"run_id": str(job_id)}, get=True).status_code == 200
        assert kept(app, "run", token)
        attempt = store_jobs.get_attempt(platform.db, attempt_id)
        assert attempt is not None
        if end == "exit":
            store_jobs.end_attempt(platform.db, attempt, TerminationReason.EXIT_ZERO, exit_code=0)
        elif end == "stop":
            platform.stop(alice, job_id)
            assert call(job, "/runs/get", {"run_id": str(job_id)}, get=True).status_code == 200  # stopping, not ended
            attempt = store_jobs.get_attempt(platform.db, attempt_id)
            assert attempt is not None
            store_jobs.end_attempt(platform.db, attempt, TerminationReason.STOPPED_BY_USER, exit_code=None)
        else:
            removals.delete_job_row(platform.db, job_id)
        r = call(job, "/runs/log-metric", metric)
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED", (end, r.text)


def test_a_lookup_racing_a_revocation_keeps_nothing(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup reads the token's row; before it can keep its answer, the token is revoked and
    that transaction commits. Its own request was already in (as without a cache); the next is not."""
    fastapi_app, platform = app
    token = user(platform, "alice")
    alice = get_user_by_name(platform.db, "alice")
    assert alice is not None
    real = store_users.token_from_row
    raced: list[Any] = []

    def read_then_revoked(row: Any) -> Any:  # runs inside the lookup, after its read
        if not raced:
            raced.append(row.id)
            revoke_token(platform.db, str(row.id), user=alice)
        return real(row)
    monkeypatch.setattr(store_users, "token_from_row", read_then_revoked)
    assert user_for_token(platform.db, token) == alice
    assert raced and not kept(app, "user", token)
    assert user_for_token(platform.db, token) is None
    assert client(fastapi_app, token=token).get("/api/v1/me").status_code == 401
