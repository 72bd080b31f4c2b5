"""API tokens: named, with a visible prefix and an expiry; expired and revoked ones are refused;
a user lists and revokes only their own (admins anyone's)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from auth_helpers import App, client, make_app, user

from serverproc import cli, start_server

from modelyard.db.users import PREFIX_LEN, add_token, get_user_by_name, list_tokens, user_for_token

DAY = 86400


@pytest.fixture
def app_and_platform(tmp_path: Path, database_url: str) -> Iterator[App]:
    app, platform = make_app(tmp_path, database_url)
    yield app, platform
    platform.close()


def test_a_token_has_a_name_a_prefix_and_the_default_expiry(app_and_platform: App) -> None:
    app, platform = app_and_platform
    alice = client(app, token=user(platform, "alice"))
    made = alice.post("/api/v1/tokens", json={"name": "laptop"}).json()
    assert made["name"] == "laptop" and made["prefix"] == made["token"][:PREFIX_LEN]
    assert made["prefix"].startswith("my_") and len(made["prefix"]) == PREFIX_LEN
    expires = datetime.fromisoformat(made["expires_at"].replace("Z", "+00:00")).timestamp()
    assert abs(expires - (time.time() + 90 * DAY)) < 120
    assert client(app, token=made["token"]).get("/api/v1/me").json()["name"] == "alice"
    listing = alice.get("/api/v1/tokens").json()["tokens"]
    assert [t["name"] for t in listing] == ["first token", "laptop"]
    assert made["token"] not in json.dumps(listing)  # only the prefix is ever shown again
    never = alice.post("/api/v1/tokens", json={"name": "ci", "expires_in": 0}).json()
    assert never["expires_at"] is None
    assert alice.post("/api/v1/tokens", json={"expires_in": -1}).json()["error"]["field"] == "expires_in"


def test_new_users_tokens_expire_after_the_configured_ttl(tmp_path: Path) -> None:
    app, platform = make_app(tmp_path, token_ttl=30 * DAY)
    try:
        admin = client(app, token=user(platform, "root", admin=True))
        bob = admin.post("/api/v1/users", json={"name": "bob", "no_isolation": True}).json()
        (first,) = list_tokens(platform.db, user_id=bob["user"]["id"])
        assert first.expires_at is not None and abs(first.expires_at - (time.time() + 30 * DAY)) < 120
    finally:
        platform.close()


def test_expired_and_revoked_tokens_are_refused(app_and_platform: App) -> None:
    app, platform = app_and_platform
    first = user(platform, "alice")
    alice = get_user_by_name(platform.db, "alice")
    assert alice is not None
    stale = add_token(platform.db, alice.id, name="old", expires_at=time.time() - 1)
    assert user_for_token(platform.db, stale) is None
    assert client(app, token=stale).get("/api/v1/me").status_code == 401
    assert [t["expired"] for t in client(app, token=first).get("/api/v1/tokens").json()["tokens"]] == [False, True]
    c = client(app, token=first)
    by_id = c.post("/api/v1/tokens", json={"name": "a"}).json()
    by_prefix = c.post("/api/v1/tokens", json={"name": "b"}).json()
    assert c.delete(f"/api/v1/tokens/{by_id['id']}").json()["revoked"]["name"] == "a"
    assert c.delete(f"/api/v1/tokens/{by_prefix['prefix']}…").json()["revoked"]["name"] == "b"
    for gone in (by_id, by_prefix):
        assert client(app, token=gone["token"]).get("/api/v1/me").status_code == 401
    assert c.delete(f"/api/v1/tokens/{by_id['id']}").status_code == 404


def test_users_list_and_revoke_only_their_own_tokens(app_and_platform: App) -> None:
    app, platform = app_and_platform
    root = client(app, "198.51.100.1", token=user(platform, "root", admin=True))
    alice = client(app, "198.51.100.2", token=user(platform, "alice"))
    bob = client(app, "198.51.100.3", token=user(platform, "bob"))
    theirs = bob.post("/api/v1/tokens", json={"name": "bobs"}).json()
    assert {t["owner"] for t in alice.get("/api/v1/tokens").json()["tokens"]} == {"alice"}
    assert alice.get("/api/v1/tokens", params={"all": True}).status_code == 403
    for ref in (str(theirs["id"]), theirs["prefix"]):
        assert alice.delete(f"/api/v1/tokens/{ref}").status_code == 404  # not "forbidden": it is not hers to know
    assert client(app, token=theirs["token"]).get("/api/v1/me").status_code == 200
    everyone = root.get("/api/v1/tokens", params={"all": True}).json()["tokens"]
    assert {t["owner"] for t in everyone} == {"root", "alice", "bob"}
    assert root.delete(f"/api/v1/tokens/{theirs['id']}").json()["revoked"]["owner"] == "bob"
    assert client(app, token=theirs["token"]).get("/api/v1/me").status_code == 401


def test_the_token_commands(tmp_path: Path) -> None:
    with start_server(tmp_path / "home") as server:
        made = json.loads(cli(["token", "create", "--name", "laptop", "--expires", "30d", "--json"],
                              server.env).stdout)
        assert made["name"] == "laptop" and made["expires_at"] is not None
        listing = cli(["token", "ls"], server.env)
        assert listing.returncode == 0 and f"{made['prefix']}…" in listing.stdout and "laptop" in listing.stdout
        assert "token file" in listing.stdout and "never" in listing.stdout  # the embedded admin's own
        bad = cli(["token", "create", "--expires", "soon"], server.env)
        assert bad.returncode != 0 and "--expires" in bad.stderr
        assert cli(["token", "revoke", made["prefix"]], server.env).returncode == 0
        refused = cli(["jobs"], {**server.env, "MODELYARD_TOKEN": made["token"]})
        assert refused.returncode != 0 and "token" in refused.stderr
        secret = cli(["webhook-secret"], server.env).stdout.strip()
        assert secret.startswith("whsec_") and cli(["webhook-secret"], server.env).stdout.strip() == secret


def test_the_token_file_never_expires_and_a_revoked_one_is_replaced_not_restored(tmp_path: Path) -> None:
    from modelyard.server.app import ensure_local_user

    app, platform = make_app(tmp_path)
    try:
        home = platform.settings.home
        home.mkdir(parents=True, exist_ok=True)
        first = ensure_local_user(platform, home)
        (entry,) = list_tokens(platform.db, user_id=None)
        assert entry.expires_at is None and entry.name == "token file"
        assert ensure_local_user(platform, home) == first  # a start with a live token keeps it
        client(app, token=first).delete(f"/api/v1/tokens/{entry.id}")
        second = ensure_local_user(platform, home)
        assert second != first and (home / "token").read_text().strip() == second
        assert user_for_token(platform.db, first) is None and user_for_token(platform.db, second) is not None
    finally:
        platform.close()
