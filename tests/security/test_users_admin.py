"""Users, quotas and the runtime cap through the real app in process: what an admin may do, what a
plain user cannot (403 however they try), and the submits the quotas and the cap refuse.
Also the CLI's ``user list`` / ``user quota`` / ``usage`` over the same app."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import threading

import pytest
from auth_helpers import App, client, make_app, sign_in, user
from typer.testing import CliRunner

from modelyard.client import Client
from modelyard.db.quotas import set_quota
from modelyard.db.users import get_user_by_name
from modelyard.errors import ModelyardError
from modelyard.jobs import JobSpec
from modelyard.cli import users as cli_users
from modelyard.cli.main import app as cli_app

JOB = {"spec": {"command": ["true"], "resources": {"cpus": 1}}}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[App, dict[str, Any]]]:
    app, platform = make_app(tmp_path, default_quota={"queued": 50})
    tokens = {"root": user(platform, "root", admin=True), "alice": user(platform, "alice"),
              "bob": user(platform, "bob")}
    yield (app, platform), {name: client(app, token=t) for name, t in tokens.items()} | {"tokens": tokens}
    platform.close()


def test_a_plain_user_can_neither_set_quotas_nor_make_themself_admin(world: tuple[App, dict[str, Any]]) -> None:
    _, c = world
    alice = c["alice"]
    for method, path, body in [("GET", "/users", None), ("GET", "/users/alice", None),
                               ("PUT", "/users/alice/quota", {"gpus": 100}), ("PUT", "/users/bob/quota", {"gpus": 0}),
                               ("PUT", "/users/alice/admin", {"admin": True}), ("GET", "/users/bob/tokens", None)]:
        r = alice.request(method, f"/api/v1{path}", json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)
    bobs = c["root"].get("/api/v1/users/bob/tokens").json()["tokens"]
    assert alice.delete(f"/api/v1/users/bob/tokens/{bobs[0]['id']}").status_code == 403
    me = alice.get("/api/v1/me").json()
    assert me["is_admin"] is False  # nothing above changed her
    assert c["root"].get("/api/v1/users/alice").json()["own_quota"] == {"gpus": None, "cpus": None, "queued": None}
    assert len(c["root"].get("/api/v1/users/bob/tokens").json()["tokens"]) == 1


def test_the_admin_pages_are_refused_to_a_plain_user(world: tuple[App, dict[str, Any]]) -> None:
    (app, _), c = world
    browser = client(app, address="198.51.100.9")
    sign_in(browser, c["tokens"]["alice"])
    r = browser.get("/ui/admin/users")
    assert r.status_code == 403 and "Forbidden" in r.text and "bob" not in r.text
    assert browser.get("/ui/admin/users", params={"format": "json"}).status_code == 403
    mine = browser.get("/ui/me", params={"format": "json"}).json()["account"]
    assert mine["name"] == "alice" and mine["quota"]["queued"] == 50  # the server default
    # the admin's page lists everyone with their tokens
    admin = client(app, address="198.51.100.10")
    sign_in(admin, c["tokens"]["root"])
    page = admin.get("/ui/admin/users", params={"format": "json"}).json()
    assert {u["name"] for u in page["users"]} == {"root", "alice", "bob"}
    assert all(len(u["tokens"]) == 1 for u in page["users"])


def test_an_admin_cannot_demote_themself_nor_the_last_admin_go(world: tuple[App, dict[str, Any]]) -> None:
    (_, platform), c = world
    r = c["root"].put("/api/v1/users/root/admin", json={"admin": False})
    assert r.status_code == 409 and r.json()["error"]["field"] == "admin"
    assert c["root"].put("/api/v1/users/alice/admin", json={"admin": True}).json()["is_admin"] is True
    assert c["alice"].get("/api/v1/users").status_code == 200  # now she may
    assert c["root"].put("/api/v1/users/alice/admin", json={"admin": False}).status_code == 200
    from modelyard.db import quotas as store_quotas
    from modelyard.errors import ModelyardError

    with pytest.raises(ModelyardError, match="only admin"):  # the store's own guard, below the service's
        store_quotas.set_admin(platform.db, "root", False)


def test_an_admin_sets_and_clears_quotas_and_bad_values_name_the_field(world: tuple[App, dict[str, Any]]) -> None:
    _, c = world
    root = c["root"]
    got = root.put("/api/v1/users/alice/quota", json={"gpus": 4, "cpus": 16, "queued": 20}).json()
    assert got["quota"] == {"gpus": 4, "cpus": 16.0, "queued": 20}
    got = root.put("/api/v1/users/alice/quota", json={"gpus": None}).json()  # cleared; the others stay
    assert got["quota"] == {"gpus": None, "cpus": 16.0, "queued": 20}
    got = root.put("/api/v1/users/alice/quota", json={"queued": None}).json()
    assert got["quota"]["queued"] == 50 and got["own_quota"]["queued"] is None  # back to the server's default
    for body, field in [({"gpus": -1}, "gpus"), ({"gpus": 1.5}, "gpus"), ({"cpus": "many"}, "cpus"),
                        ({"disk": 3}, "disk")]:
        r = root.put("/api/v1/users/alice/quota", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert root.put("/api/v1/users/nobody/quota", json={"gpus": 1}).status_code == 404
    listed = {u["name"]: u for u in root.get("/api/v1/users").json()["users"]}
    assert listed["alice"]["quota"]["cpus"] == 16.0 and listed["bob"]["quota"]["cpus"] is None


def test_an_admin_revokes_a_users_token_and_only_through_its_owner(world: tuple[App, dict[str, Any]]) -> None:
    _, c = world
    root = c["root"]
    (alices,) = root.get("/api/v1/users/alice/tokens").json()["tokens"]
    assert root.delete(f"/api/v1/users/bob/tokens/{alices['id']}").status_code == 404  # not bob's
    assert root.delete(f"/api/v1/users/alice/tokens/{alices['id']}").json()["revoked"]["id"] == alices["id"]
    assert c["alice"].get("/api/v1/me").status_code == 401


def test_a_submit_past_the_queued_jobs_quota_is_refused_naming_it(world: tuple[App, dict[str, Any]]) -> None:
    (_, platform), c = world
    c["root"].put("/api/v1/users/alice/quota", json={"queued": 2})
    for _ in range(2):
        assert c["alice"].post("/api/v1/jobs", json=JOB).status_code == 201
    r = c["alice"].post("/api/v1/jobs", json=JOB)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["field"] == "quota_queued"
    assert r.json()["error"]["message"].startswith("alice has 2 of their 2 queued jobs")
    assert c["bob"].post("/api/v1/jobs", json=JOB).status_code == 201  # bob's own quota is not hers
    # a restart queues the job again: it counts too, whoever asks for it
    ended = platform.submit(get_user_by_name(platform.db, "bob"), JobSpec(command=["true"]), snapshot=None)
    platform.stop(get_user_by_name(platform.db, "bob"), ended.id)
    c["root"].put("/api/v1/users/bob/quota", json={"queued": 1})
    r = c["root"].post(f"/api/v1/jobs/{ended.id}/restart")
    assert r.status_code == 409 and r.json()["error"]["message"].startswith("bob has 1 of their 1"), r.text
    assert c["alice"].get("/api/v1/me/usage").json()["usage"]["queued"] == 2


def test_submits_at_once_cannot_pass_the_queued_jobs_quota(tmp_path: Path, database_url: str) -> None:
    """Eight submits racing for the last three places: the count and the insert are one
    transaction (the user's row locked on PostgreSQL), so exactly three get in."""
    _, platform = make_app(tmp_path, database_url)
    try:
        user(platform, "alice")
        alice = get_user_by_name(platform.db, "alice")
        set_quota(platform.db, "alice", {"queued": 3})
        start = threading.Barrier(8)
        outcomes: list[str] = []

        def submit() -> None:
            start.wait()
            try:
                platform.submit(alice, JobSpec(command=["true"]), snapshot=None)
                outcomes.append("queued")
            except ModelyardError as e:
                outcomes.append(e.field or "?")

        threads = [threading.Thread(target=submit) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(outcomes) == ["queued"] * 3 + ["quota_queued"] * 5, outcomes
    finally:
        platform.close()


def test_a_quota_smaller_than_the_ask_is_refused_at_submit(world: tuple[App, dict[str, Any]]) -> None:
    _, c = world
    c["root"].put("/api/v1/users/alice/quota", json={"cpus": 0.5})
    r = c["alice"].post("/api/v1/jobs", json=JOB)
    assert r.status_code == 422 and r.json()["error"]["field"] == "resources.cpus", r.text
    assert "per-user CPU quota is 0.5" in r.json()["error"]["message"]


def test_a_max_runtime_past_the_cap_is_refused_naming_the_cap(tmp_path: Path) -> None:
    app, platform = make_app(tmp_path, max_runtime_cap=24 * 3600.0)
    try:
        alice = client(app, token=user(platform, "alice"))
        r = alice.post("/api/v1/jobs", json={"spec": {"command": ["true"], "max_runtime": "30h"}})
        assert r.status_code == 422 and r.json()["error"]["field"] == "max_runtime", r.text
        assert "cap of 24h (MODELYARD_MAX_RUNTIME_CAP)" in r.json()["error"]["message"]
        # the default (72h) is held to the cap, also as the CLI sends it, spelled out
        assert alice.post("/api/v1/jobs", json={"spec": {"command": ["true"]}}).json()["max_runtime"] == 24 * 3600
        spelled = alice.post("/api/v1/jobs", json={"spec": {"command": ["true"], "max_runtime": 72 * 3600}})
        assert spelled.json()["max_runtime"] == 24 * 3600
        assert alice.post("/api/v1/jobs", json={"spec": {"command": ["true"], "max_runtime": "2h"}}).status_code == 201
    finally:
        platform.close()


def test_the_cli_sets_and_lists_quotas(world: tuple[App, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    (app, _), c = world

    def as_(who: str) -> Client:
        """The CLI's own client, over the app in process (each command closes its client)."""
        cl = Client("http://testserver", c["tokens"][who])
        cl._http = client(app, base_url="http://testserver/api/v1", token=c["tokens"][who])
        return cl

    runner = CliRunner()
    monkeypatch.setattr(cli_users, "get_client", lambda: as_("root"))
    done = runner.invoke(cli_app, ["user", "quota", "alice", "--gpus", "4", "--cpus", "16", "--queued", "20"])
    assert done.exit_code == 0, done.output
    assert "alice: 4 GPUs, 16 CPUs, 20 queued" in done.output
    done = runner.invoke(cli_app, ["user", "quota", "alice", "--gpus", "none"])
    assert "alice: - GPUs, 16 CPUs, 20 queued" in done.output
    done = runner.invoke(cli_app, ["user", "quota", "alice", "--gpus", "lots"])
    assert done.exit_code == 2 and "--gpus" in done.output
    listed = runner.invoke(cli_app, ["user", "list"])
    assert listed.exit_code == 0
    row = next(line.split() for line in listed.output.splitlines() if line.split()[:1] == ["alice"])
    assert row[1:] == ["0", "/", "-", "0", "/", "16", "0", "/", "20", "0.0"]
    monkeypatch.setattr(cli_users, "get_client", lambda: as_("alice"))
    assert runner.invoke(cli_app, ["user", "list"]).exit_code != 0  # 403, said in one line
    mine = runner.invoke(cli_app, ["usage", "--json"])
    assert '"queued": 20' in mine.output


@pytest.mark.parametrize(("name", "value", "words"), [
    ("MODELYARD_DEFAULT_QUOTA", "gpus=lots", "gpus='lots'"), ("MODELYARD_DEFAULT_QUOTA", "disk=3", "unknown quota"),
    ("MODELYARD_DEFAULT_QUOTA", "gpus=-1", "number >= 0"), ("MODELYARD_FAIRSHARE_HALFLIFE", "0", "longer than 0"),
    ("MODELYARD_MAX_RUNTIME_CAP", "soon", "not a duration"),
])
def test_a_bad_quota_or_fair_share_setting_is_named(tmp_path: Path, name: str, value: str, words: str) -> None:
    from modelyard.config import Settings

    with pytest.raises(ModelyardError, match=words) as err:
        Settings.from_env({"MODELYARD_HOME": str(tmp_path), name: value})
    assert err.value.field == name
    ok = Settings.from_env({"MODELYARD_HOME": str(tmp_path), "MODELYARD_DEFAULT_QUOTA": "gpus=4, cpus=16.5,queued=100",
                            "MODELYARD_FAIRSHARE_HALFLIFE": "1d", "MODELYARD_MAX_RUNTIME_CAP": "24h"})
    assert (ok.default_quota, ok.fairshare_halflife, ok.max_runtime_cap) == \
        ({"gpus": 4, "cpus": 16.5, "queued": 100}, 86400.0, 86400.0)
