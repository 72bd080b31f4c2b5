"""Secure by default: without MODELYARD_JOB_UIDS every job runs as the server's user, so a second,
non-admin user is refused unless an admin says --no-isolation knowingly; running in place
(a workdir on the server's disk, no snapshot) is for admins only."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import wait_for
from serverproc import ServerProc, cli, start_server

from modelyard.config import Settings
from modelyard.server.app import create_app, ensure_local_user
from modelyard.server.platform import Platform


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("isolation") / "home") as srv:
        yield srv


def api(server: ServerProc, token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {token or server.token}"})


def test_a_non_admin_user_is_refused_without_isolation_and_the_message_says_why(server: ServerProc) -> None:
    done = cli(["user", "create", "bob"], server.env)
    assert done.returncode == 1 and not done.stdout
    assert "MODELYARD_JOB_UIDS" in done.stderr and "--no-isolation" in done.stderr
    assert "admin token" in done.stderr  # why: what such a user's jobs could read
    with api(server) as admin:
        r = admin.post("/users", json={"name": "bob"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "no_isolation"
        # nothing half-written: the name is still free
        assert admin.post("/users", json={"name": "bob", "no_isolation": True}).status_code == 201


def test_no_isolation_knowingly_and_admins_are_allowed(server: ServerProc) -> None:
    done = cli(["user", "create", "dave", "--no-isolation"], server.env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("my_")
    done = cli(["user", "create", "carol", "--admin"], server.env)
    assert done.returncode == 0, done.stderr


def test_with_job_uids_a_plain_user_needs_no_flag() -> None:
    home = Path(tempfile.mkdtemp(prefix="modelyard-uids-", dir="/tmp"))  # reachable by other uids
    try:
        settings = Settings.from_env({"MODELYARD_HOME": str(home), "MODELYARD_JOB_UIDS": "61000-61999"})
        platform = Platform(settings, server_url=None)  # not started: nothing is scheduled
        token = ensure_local_user(platform, home)
        with TestClient(create_app(platform), base_url="http://t/api/v1",
                        headers={"Authorization": f"Bearer {token}"}) as admin:
            assert admin.post("/users", json={"name": "erin"}).status_code == 201
        platform.close()
        # and the server's files are its own: only runs/ and cache/ can be walked through
        assert home.stat().st_mode & 0o777 == 0o711
        assert (home / "modelyard.db").stat().st_mode & 0o777 == 0o600
        assert (home / "artifacts").stat().st_mode & 0o777 == 0o700
        assert (home / "runs").stat().st_mode & 0o777 == 0o711
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_running_in_place_is_for_admins_only(server: ServerProc) -> None:
    with api(server) as admin:
        token = admin.post("/users", json={"name": "frank", "no_isolation": True}).json()["token"]
        with api(server, token) as frank:
            r = frank.post("/jobs", json={"spec": {"command": ["true"], "workdir": str(server.home)}})
            assert r.status_code == 403 and r.json()["error"]["field"] == "workdir"
            assert frank.get("/jobs").json()["total"] == 0
        r = admin.post("/jobs", json={"spec": {"command": ["true"], "workdir": "/"}})
        assert r.status_code == 201, r.text
        # ended before the server stops, so that its supervisor is not left retrying its final report
        wait_for(lambda: admin.get(f"/jobs/{r.json()['id']}").json()["state"] == "succeeded", timeout=30,
                 what="the admin's job in place to succeed")
