"""Who reaches the model registry (services/registry.py) and a version's files (services/run_artifacts.py):
a registered model is its owner's, and another user's answers exactly as one that does not exist,
through every route; a job's run token may create its owner's registered model and register
versions from its own run's models only, and nothing else. In-process over the real app and a real
SQLite; every refusal in MLflow's error form."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from inproc import InProc, in_process
from servers import ui_sign_in

from modelyard.db import jobs as store_jobs
from modelyard.db.users import get_user_by_name, hash_token
from modelyard.jobs.run_token import run_token
from modelyard.server.mlflow_auth import Caller
from modelyard.services import registry

API = "/api/2.0/mlflow"
ART = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProc]:
    with in_process(tmp_path_factory.mktemp("mlflow-registry") / "home") as a:
        yield a


def _ok(r):  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    return r.json()


def _refused(r, status: int = 404, code: str = "RESOURCE_DOES_NOT_EXIST") -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.json()["error_code"] == code, r.text
    return r.json()["message"]


def _logged(app: InProc, token: str, run_id: str) -> str:
    """A logged model of the run with one file."""
    body = {"experiment_id": "0", "source_run_id": run_id, "name": "model"}
    model = _ok(app.client.post(f"{API}/logged-models", json=body, headers=app.auth(token)))["model"]["info"]["model_id"]
    _ok(app.client.put(f"{ART}/models/{model}/artifacts/MLmodel", content=b"flavors: {}", headers=app.auth(token)))
    return model


@pytest.fixture(scope="module")
def world(app: InProc) -> dict:
    """Alice's registered model "digits", version 1 (from a run with no process) with an alias; her
    running job, its run token and its own logged model; Bob with a run and a logged model of his."""
    alice, bob = app.new_user("alice"), app.new_user("bob")
    c, a = app.client, app.auth(alice)
    run = _ok(c.post(f"{API}/runs/create", json={}, headers=a))["run"]["info"]["run_id"]
    bobs_run = _ok(c.post(f"{API}/runs/create", json={}, headers=app.auth(bob)))["run"]["info"]["run_id"]
    model = _logged(app, alice, run)
    _ok(c.post(f"{API}/registered-models/create", json={"name": "digits"}, headers=a))
    _ok(c.post(f"{API}/model-versions/create", json={"name": "digits", "source": f"models:/{model}"}, headers=a))
    _ok(c.post(f"{API}/registered-models/alias", json={"name": "digits", "alias": "champion", "version": "1"},
               headers=a))
    r = c.post("/api/v1/jobs", json={"spec": {"command": ["python", "-c", "pass"]}}, headers=a)
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    placed = store_jobs.place(app.platform.db, job, token="report-token", executor="local")
    assert placed is not None
    token = run_token(placed[1].id, hash_token("report-token"))
    return {"alice": alice, "bob": bob, "run": run, "model": model, "job": str(job), "job_token": token,
            "job_model": _logged(app, token, str(job)), "bobs_model": _logged(app, bob, bobs_run)}


def _version_files(app: InProc, world: dict) -> str:
    uri = _ok(app.client.get(f"{API}/model-versions/get-download-uri", params={"name": "digits", "version": "1"},
                             headers=app.auth(world["alice"])))["artifact_uri"]
    return uri.removeprefix("mlflow-artifacts:/")


def _registry_routes(app: InProc, headers: dict[str, str], name: str, source: str | None) -> list:  # type: ignore[type-arg]
    """Every registry call on ``name`` (``source``: registering a version from it too)."""
    c = app.client
    one = {"name": name, "version": "1"}
    create = [] if source is None else [
        c.post(f"{API}/model-versions/create", json={"name": name, "source": source}, headers=headers)]
    return create + [c.get(f"{API}/registered-models/get", params={"name": name}, headers=headers),
            c.post(f"{API}/registered-models/rename", json={"name": name, "new_name": "taken"}, headers=headers),
            c.patch(f"{API}/registered-models/update", json={"name": name, "description": "x"}, headers=headers),
            c.post(f"{API}/registered-models/get-latest-versions", json={"name": name}, headers=headers),
            c.post(f"{API}/registered-models/set-tag", json={"name": name, "key": "k", "value": "v"}, headers=headers),
            c.request("DELETE", f"{API}/registered-models/delete-tag", json={"name": name, "key": "k"},
                      headers=headers),
            c.post(f"{API}/registered-models/alias", json={**one, "alias": "mine"}, headers=headers),
            c.get(f"{API}/registered-models/alias", params={"name": name, "alias": "champion"}, headers=headers),
            c.request("DELETE", f"{API}/registered-models/alias", json={"name": name, "alias": "champion"},
                      headers=headers),
            c.get(f"{API}/model-versions/get", params=one, headers=headers),
            c.patch(f"{API}/model-versions/update", json={**one, "description": "x"}, headers=headers),
            c.get(f"{API}/model-versions/get-download-uri", params=one, headers=headers),
            c.post(f"{API}/model-versions/transition-stage", json={**one, "stage": "Production"}, headers=headers),
            c.post(f"{API}/model-versions/set-tag", json={**one, "key": "k", "value": "v"}, headers=headers),
            c.request("DELETE", f"{API}/model-versions/delete-tag", json={**one, "key": "k"}, headers=headers),
            c.request("DELETE", f"{API}/model-versions/delete", json=one, headers=headers),
            c.request("DELETE", f"{API}/registered-models/delete", json={"name": name}, headers=headers)]


def _file_routes(app: InProc, headers: dict[str, str], files: str) -> list:  # type: ignore[type-arg]
    """Every artifact call on a version's files."""
    c = app.client
    return [c.get(f"{ART}/{files}/MLmodel", headers=headers),
            c.get(ART, params={"path": files}, headers=headers),
            c.put(f"{ART}/{files}/planted", content=b"x", headers=headers),
            c.delete(f"{ART}/{files}/MLmodel", headers=headers)]


def test_another_users_registered_model_is_a_ghost(app: InProc, world: dict) -> None:
    bob, files = app.auth(world["bob"]), _version_files(app, world)
    ghost = _refused(app.client.get(f"{API}/registered-models/get", params={"name": "nothing"}, headers=bob))
    assert _refused(app.client.get(f"{API}/registered-models/get", params={"name": "digits"}, headers=bob)) \
        == ghost.replace("nothing", "digits")
    for r in _registry_routes(app, bob, "digits", f"models:/{world['bobs_model']}") + _file_routes(app, bob, files):
        _refused(r)
    # his searches find none of hers
    assert _ok(app.client.get(f"{API}/registered-models/search", headers=bob)) == {"registered_models": []}
    assert _ok(app.client.get(f"{API}/model-versions/search", params={"filter": "name = 'digits'"},
                              headers=bob)) == {"model_versions": []}
    # a "digits" of his own is his, and his model cannot be made from her logged model
    _ok(app.client.post(f"{API}/registered-models/create", json={"name": "digits"}, headers=bob))
    for source in (f"models:/{world['model']}", f"runs:/{world['run']}/artifacts"):
        _refused(app.client.post(f"{API}/model-versions/create", json={"name": "digits", "source": source},
                                 headers=bob))
    _refused(app.client.post(f"{API}/model-versions/create", json={"name": "digits", "source": "models:/x",
                                                                   "model_id": world["model"]}, headers=bob))
    # hers is untouched
    alice = app.auth(world["alice"])
    got = _ok(app.client.get(f"{API}/registered-models/get", params={"name": "digits"}, headers=alice))
    assert got["registered_model"]["aliases"] == [{"alias": "champion", "version": "1"}]
    assert got["registered_model"]["tags"] == [] and [v["version"] for v in
                                                      got["registered_model"]["latest_versions"]] == ["1"]
    assert app.client.get(f"{ART}/{files}/MLmodel", headers=alice).content == b"flavors: {}"
    # a version's files are read only, even to its owner: its copy stays what was registered
    _refused(app.client.put(f"{ART}/{files}/planted", content=b"x", headers=alice), 403, "PERMISSION_DENIED")
    _refused(app.client.delete(f"{ART}/{files}/MLmodel", headers=alice), 403, "PERMISSION_DENIED")
    assert not [e for e in app.platform.storage.list("") if e.path.endswith("planted")]


def test_a_jobs_token_registers_its_own_runs_models_only(app: InProc, world: dict) -> None:
    job, files = app.auth(world["job_token"]), _version_files(app, world)
    # another run's model of the same owner, by id, by source or by run: not the job's
    for body in ({"source": f"models:/{world['model']}"}, {"source": "models:/x", "model_id": world["model"]},
                 {"source": f"runs:/{world['run']}/models"},
                 {"source": f"mlflow-artifacts:/models/{world['model']}/artifacts"}):
        _refused(app.client.post(f"{API}/model-versions/create", json={"name": "digits", **body}, headers=job))
    # the registry otherwise: refused, whatever the name, and her version's files are not the job's to read
    for r in _registry_routes(app, job, "digits", None):
        assert "run token" in _refused(r, 403, "PERMISSION_DENIED")
    for r in _file_routes(app, job, files):
        _refused(r)
    for path in ("registered-models/search", "model-versions/search"):
        _refused(app.client.get(f"{API}/{path}", headers=job), 403, "PERMISSION_DENIED")
    # its own: the owner's model created if missing (already there: the client goes on), a version from its model
    _ok(app.client.post(f"{API}/registered-models/create", json={"name": "from-job"}, headers=job))
    _refused(app.client.post(f"{API}/registered-models/create", json={"name": "digits"}, headers=job), 400,
             "RESOURCE_ALREADY_EXISTS")
    made = _ok(app.client.post(f"{API}/model-versions/create", json={
        "name": "digits", "source": f"models:/{world['job_model']}", "model_id": world["job_model"],
        "run_id": world["job"]}, headers=job))["model_version"]
    assert (made["version"], made["run_id"]) == ("2", world["job"]) and "aliases" not in made
    alice = app.auth(world["alice"])
    mine = _ok(app.client.get(f"{API}/registered-models/get", params={"name": "from-job"}, headers=alice))
    assert mine["registered_model"]["user_id"] == "alice"


@pytest.mark.parametrize("path", [
    "registry/{rm}/versions/1/../2/MLmodel",
    "registry/{rm}/versions/1//MLmodel",
    "registry/{rm}/versions/1/a\\..\\x",
    "registry/{rm}/../../jobs/1/outputs",
    "registry/x/versions/1/MLmodel",
])
def test_odd_registry_paths_and_names_are_refused(app: InProc, world: dict, path: str) -> None:
    alice = app.auth(world["alice"])
    rm = _version_files(app, world).split("/")[1]
    _refused(app.client.get(ART, params={"path": path.format(rm=rm)}, headers=alice), 400, "INVALID_PARAMETER_VALUE")
    for name in ("a/b", "a:b", "x" * 251, " lead", "a\\b", ""):
        r = app.client.post(f"{API}/registered-models/create", json={"name": name}, headers=alice)
        assert "registered model name" in _refused(r, 400, "INVALID_PARAMETER_VALUE") or not name
    for alias in ("latest", "v3", "a b", "x" * 256):
        r = app.client.post(f"{API}/registered-models/alias", json={"name": "digits", "alias": alias, "version": "1"},
                            headers=alice)
        assert "invalid alias" in _refused(r, 400, "INVALID_PARAMETER_VALUE")


def test_two_registrations_at_once_get_two_numbers(app: InProc, world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second registration runs while the first copies its files (the seam where they overlap):
    each gets its own number and its own copy, so no version's files are another's."""
    alice = app.auth(world["alice"])
    body = {"name": "raced", "source": f"models:/{world['model']}"}
    _ok(app.client.post(f"{API}/registered-models/create", json={"name": "raced"}, headers=alice))
    storage, copy, inner, started = app.platform.storage, app.platform.storage.copy_prefix, [], []

    caller = Caller(get_user_by_name(app.platform.db, "alice"))  # type: ignore[arg-type]

    def copy_while_another_registers(src: str, dst: str) -> int:
        if not started:  # the same call the route makes, from inside the first one's copy
            started.append(True)
            inner.append(registry.create_version(app.platform, caller, name="raced", source=body["source"],
                                                 run_id=None, model_id=None, tags=[], description=None))
        return copy(src, dst)

    monkeypatch.setattr(storage, "copy_prefix", copy_while_another_registers)
    outer = _ok(app.client.post(f"{API}/model-versions/create", json=body, headers=alice))
    assert (outer["model_version"]["version"], inner[0]["model_version"]["version"]) == ("1", "2")
    found = _ok(app.client.get(f"{API}/model-versions/search", params={"filter": "name = 'raced'"}, headers=alice))
    assert [v["version"] for v in found["model_versions"]] == ["2", "1"]
    for n in ("1", "2"):
        uri = _ok(app.client.get(f"{API}/model-versions/get-download-uri", params={"name": "raced", "version": n},
                                 headers=alice))["artifact_uri"].removeprefix("mlflow-artifacts:/")
        assert app.client.get(f"{ART}/{uri}/MLmodel", headers=alice).content == b"flavors: {}"


@contextmanager
def _browser(app: InProc, token: str) -> Iterator[TestClient]:
    """A signed-in browser of its own, so the module client's cookie jar stays without a session
    (not entered as a context: that would start the platform's loops)."""
    c = TestClient(app.client.app, raise_server_exceptions=False, follow_redirects=False)
    try:
        assert ui_sign_in(c, token).status_code == 303
        yield c
    finally:
        c.close()


def test_the_registry_pages_and_api_answer_another_users_model_as_none(app: InProc, world: dict) -> None:
    """/ui/models, /api/v1/models (what `modelyard models` reads) and the pages' download links: Alice's
    model is not Bob's to see or download, even named with ?owner=alice; an admin opens it with ?owner=."""
    alice = app.auth(world["alice"])
    _ok(app.client.post(f"{API}/registered-models/create", json={"name": "alice-secret"}, headers=alice))
    _ok(app.client.post(f"{API}/model-versions/create", json={"name": "alice-secret",
                                                              "source": f"models:/{world['model']}"}, headers=alice))
    mine = app.client.get("/api/v1/models/alice-secret", headers=alice)
    assert mine.status_code == 200, mine.text
    link = f"/api/2.0/mlflow-artifacts/artifacts/{mine.json()['versions'][0]['artifact_path']}/MLmodel"
    with _browser(app, world["alice"]) as hers:
        assert link in hers.get("/ui/models/alice-secret").text and hers.get(link).content == b"flavors: {}"
    bob = app.auth(world["bob"])
    for query in ("", "?owner=alice"):
        for path in ("alice-secret", "nothing"):
            r = app.client.get(f"/api/v1/models/{path}{query}", headers=bob)
            assert r.status_code == 404 and r.json()["error"]["message"] == f"registered model {path!r} not found"
    assert "alice-secret" not in app.client.get("/api/v1/models", headers=bob).text
    with _browser(app, world["bob"]) as his:
        for query in ("", "?owner=alice"):
            page = his.get(f"/ui/models/alice-secret{query}")
            assert page.status_code == 404 and "alice-secret&#39; not found" in page.text, page.text[:300]
        assert "alice-secret" not in his.get("/ui/models").text
        assert his.get(link).status_code == 404  # her version's files, through the page's download path
        assert his.get(f"/ui/jobs/{world['run']}").status_code == 404  # the job page that would link it
    with _browser(app, app.admin) as admin:
        assert admin.get("/ui/models/alice-secret").status_code == 404  # no such model of the admin's own
        page = admin.get("/ui/models/alice-secret?owner=alice")
        assert page.status_code == 200 and link in page.text
    assert app.client.get("/api/v1/models/alice-secret?owner=alice", headers=app.auth(app.admin)).status_code == 200
