"""Who reaches a logged model (services/logged_models.py) and its files (services/run_artifacts.py):
its run's owner; another user's model answers exactly as one that does not exist, through every
route; a job's run token reaches only the models of its own run. In-process over the real app and
a real SQLite; every refusal in MLflow's error form."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from inproc import InProc, in_process

from modelyard.db import jobs as store_jobs
from modelyard.db.users import hash_token
from modelyard.jobs.run_token import run_token

API = "/api/2.0/mlflow"
ART = "/api/2.0/mlflow-artifacts/artifacts"
GHOST = "m-" + "0" * 32


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProc]:
    with in_process(tmp_path_factory.mktemp("mlflow-models") / "home") as a:
        yield a


def _ok(r):  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    return r.json()


def _model(app: InProc, token: str, run_id: str, name: str = "model") -> str:
    body = {"experiment_id": "0", "source_run_id": run_id, "name": name}
    return _ok(app.client.post(f"{API}/logged-models", json=body, headers=app.auth(token)))["model"]["info"]["model_id"]


@pytest.fixture(scope="module")
def world(app: InProc) -> dict:
    """Alice's run with no process and its model (one file in it), her running job and its run
    token, and Bob with a run of his own."""
    alice, bob = app.new_user("alice"), app.new_user("bob")
    run = _ok(app.client.post(f"{API}/runs/create", json={}, headers=app.auth(alice)))["run"]["info"]["run_id"]
    bobs_run = _ok(app.client.post(f"{API}/runs/create", json={}, headers=app.auth(bob)))["run"]["info"]["run_id"]
    model = _model(app, alice, run)
    _ok(app.client.put(f"{ART}/models/{model}/artifacts/MLmodel", content=b"alice's", headers=app.auth(alice)))
    r = app.client.post("/api/v1/jobs", json={"spec": {"command": ["python", "-c", "pass"]}}, headers=app.auth(alice))
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    placed = store_jobs.place(app.platform.db, job, token="report-token", executor="local")
    assert placed is not None
    token = run_token(placed[1].id, hash_token("report-token"))
    return {"alice": alice, "bob": bob, "run": run, "bobs_run": bobs_run, "model": model, "job": str(job),
            "job_token": token}


def _refused(r, status: int = 404, code: str = "RESOURCE_DOES_NOT_EXIST") -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.json()["error_code"] == code, r.text
    return r.json()["message"]


def _every_route(app: InProc, headers: dict[str, str], model: str, run_id: str) -> list:  # type: ignore[type-arg]
    c = app.client
    return [c.get(f"{API}/logged-models/{model}", headers=headers),
            c.patch(f"{API}/logged-models/{model}", json={"status": "LOGGED_MODEL_READY"}, headers=headers),
            c.patch(f"{API}/logged-models/{model}/tags", json={"tags": [{"key": "k", "value": "v"}]}, headers=headers),
            c.delete(f"{API}/logged-models/{model}/tags/k", headers=headers),
            c.post(f"{API}/logged-models/{model}/params", json={"params": [{"key": "p", "value": "1"}]},
                   headers=headers),
            c.post(f"{API}/runs/outputs", json={"run_id": run_id, "models": [{"model_id": model, "step": 0}]},
                   headers=headers),
            c.put(f"{ART}/models/{model}/artifacts/planted", content=b"x", headers=headers),
            c.get(f"{ART}/models/{model}/artifacts/MLmodel", headers=headers),
            c.get(ART, params={"path": f"models/{model}/artifacts"}, headers=headers),
            c.delete(f"{ART}/models/{model}/artifacts/MLmodel", headers=headers)]


def test_another_users_model_is_a_ghost(app: InProc, world: dict) -> None:
    bob, model = app.auth(world["bob"]), world["model"]
    ghost = _refused(app.client.get(f"{API}/logged-models/{GHOST}", headers=bob))
    assert _refused(app.client.get(f"{API}/logged-models/{model}", headers=bob)) == ghost.replace(GHOST, model)
    for r in _every_route(app, bob, model, world["bobs_run"]) + [
            app.client.delete(f"{API}/logged-models/{model}", headers=bob)]:
        _refused(r)
    # his searches do not find it: his Default holds none, and her experiments are not his
    found = _ok(app.client.post(f"{API}/logged-models/search", json={"experiment_ids": ["0"]}, headers=bob))
    assert found == {"models": []}
    # nor can he hang a model of his on her run
    _refused(app.client.post(f"{API}/logged-models", json={"experiment_id": "0", "source_run_id": world["run"]},
                             headers=bob))
    # hers is untouched (and found by her, a page at a time)
    alice = app.auth(world["alice"])
    page = _ok(app.client.post(f"{API}/logged-models/search", json={"experiment_ids": ["0"], "max_results": 1,
                               "filter": f"source_run_id = '{world['run']}' AND name = 'model'"}, headers=alice))
    assert [m["info"]["model_id"] for m in page["models"]] == [model] and "next_page_token" not in page
    got = _ok(app.client.get(f"{API}/logged-models/{model}", headers=alice))["model"]
    assert got["info"]["tags"] == [] and got["data"]["params"] == []
    assert app.client.get(f"{ART}/models/{model}/artifacts/MLmodel", headers=alice).content == b"alice's"
    assert not [e for e in app.platform.storage.list("") if e.path.endswith("planted")]


def test_a_jobs_token_reaches_its_own_runs_models_only(app: InProc, world: dict) -> None:
    job_token, own_run = app.auth(world["job_token"]), world["job"]
    # a model of another run of the same owner: not the job's, for anything
    for r in _every_route(app, job_token, world["model"], own_run):
        _refused(r)
    _refused(app.client.post(f"{API}/logged-models", json={"experiment_id": "0", "source_run_id": world["run"]},
                             headers=job_token))
    # its own: created, finalized, tagged, its files uploaded beside its attempt's MLflow artifacts
    own = _model(app, world["job_token"], own_run)
    _ok(app.client.put(f"{ART}/models/{own}/artifacts/MLmodel", content=b"its", headers=job_token))
    for r in _every_route(app, job_token, own, own_run):
        assert r.status_code == 200, r.text
    found = _ok(app.client.post(f"{API}/logged-models/search", json={"experiment_ids": ["0"]}, headers=job_token))
    assert [m["info"]["model_id"] for m in found["models"]] == [own]
    assert app.platform.storage.is_file(f"jobs/{own_run}/attempts/1/mlflow/models/{own}/planted")
    # deleting a model is its owner's call, not the job's
    _refused(app.client.delete(f"{API}/logged-models/{own}", headers=job_token), 403, "PERMISSION_DENIED")


@pytest.mark.parametrize("path", [
    "models/{model}/artifacts/../../{other}/artifacts/x",
    "models/{model}/artifacts/a/../../x",
    "models/{model}/artifacts//x",
    "models/{model}/../{other}/artifacts/x",
    "models/m-../artifacts/x",
    "models/{model}/artifacts/a\\..\\x",
])
def test_odd_model_paths_and_ids_are_refused(app: InProc, world: dict, path: str) -> None:
    alice = app.auth(world["alice"])
    path = path.format(model=world["model"], other=_model(app, world["alice"], world["run"], "other"))
    _refused(app.client.get(ART, params={"path": path}, headers=alice), 400, "INVALID_PARAMETER_VALUE")
    for bad in ("m-..", "m-" + "0" * 31 + "%2F", "..%2F..%2Fjobs"):
        r = app.client.get(f"{API}/logged-models/{bad}", headers=alice)
        assert r.status_code == 404 and r.json()["error_code"] in ("RESOURCE_DOES_NOT_EXIST", "ENDPOINT_NOT_FOUND")
    for name in ("../x", "a/b", "a.b", "x" * 251, "a\\b"):
        r = app.client.post(f"{API}/logged-models", json={"source_run_id": world["run"], "name": name}, headers=alice)
        assert "invalid model name" in _refused(r, 400, "INVALID_PARAMETER_VALUE")
