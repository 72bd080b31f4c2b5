"""A plain user can neither see nor use another user's private environment, by any road in.

Each road is tried as an attacker would: list, show by name, submit a job naming it, remove it,
and the web form's list. A private name must answer exactly as a name that does not exist, so
its existence does not leak either.
"""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from servers import ServerProcess, ui_sign_in

SECRET_REQUIREMENTS = "--index-url https://alice:hunter2@pypi.example/simple\nprivate-pkg==1.0\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("secenv") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tokens(server: ServerProcess) -> dict[str, str]:
    with server.client() as admin:
        return {name: admin.post("/users", json={"name": name, "no_isolation": True}).json()["token"] for name in ("alice", "mallory")}


def test_another_users_private_environment_is_invisible_and_unusable(
        server: ServerProcess, tokens: dict[str, str]) -> None:
    with server.client(tokens["alice"]) as alice:
        made = alice.post("/environments", json={"name": "alices", "requirements": SECRET_REQUIREMENTS})
        assert made.status_code == 201, made.text
    with server.client(tokens["mallory"]) as m:
        assert m.get("/environments").json() == {"environments": []}
        absent = m.get("/environments/no-such-env")
        hidden = m.get("/environments/alices")
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["error"]["message"].replace("alices", "X") == \
            absent.json()["error"]["message"].replace("no-such-env", "X")

        job = m.post("/jobs", json={"spec": {"command": ["true"], "environment": "alices"}})
        assert job.status_code == 404 and job.json()["error"]["field"] == "environment", job.text
        assert m.get("/jobs").json()["total"] == 0  # nothing was queued with it

        assert m.delete("/environments/alices").status_code == 404
        # the web form lists only what mallory may use
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            assert ui_sign_in(browser, tokens["mallory"], "/ui/new").status_code == 303
            page = browser.get("/ui/new")
            assert page.status_code == 200 and "alices" not in page.text and "hunter2" not in page.text
            data = browser.get("/ui/new?format=json").json()
            assert "alices" not in str(data) and "hunter2" not in str(data)
    with server.client(tokens["alice"]) as alice:
        assert alice.get("/environments/alices").json()["requirements"] == SECRET_REQUIREMENTS  # still there
