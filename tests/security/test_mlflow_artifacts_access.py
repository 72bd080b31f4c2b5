"""Who reaches a run's MLflow artifacts (server/routes_mlflow_artifacts.py, services/run_artifacts.py):
its owner, a job's run token only its own run's, nobody through a path outside them; an upload over
MODELYARD_MAX_ARTIFACT is refused whole. In-process over the real app and a real SQLite; every refusal
in MLflow's error form."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from inproc import InProc, in_process

from modelyard.db import jobs as store_jobs
from modelyard.db.schema import jobs
from modelyard.db.users import hash_token
from modelyard.jobs.run_token import run_token

ART = "/api/2.0/mlflow-artifacts/artifacts"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProc]:
    with in_process(tmp_path_factory.mktemp("mlflow-art") / "home", env={"MODELYARD_MAX_ARTIFACT": str(LIMIT)}) as a:
        yield a


@pytest.fixture(scope="module")
def world(app: InProc) -> dict:
    """Alice's run with no process (one artifact in it), her running job with its run token, and Bob."""
    alice, bob = app.new_user("alice"), app.new_user("bob")
    run_id, job_id = _submit(app, alice), _submit(app, alice)
    with app.platform.db.write() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == run_id).values(kind="run", state="running"))
    placed = store_jobs.place(app.platform.db, job_id, token="report-token", executor="local")
    assert placed is not None
    token = run_token(placed[1].id, hash_token("report-token"))
    r = app.client.put(f"{ART}/runs/{run_id}/artifacts/secret.txt", content=b"alice's", headers=app.auth(alice))
    assert r.status_code == 200, r.text
    return {"alice": alice, "bob": bob, "run": run_id, "job": job_id, "job_token": token}


def _submit(app: InProc, token: str) -> int:
    r = app.client.post("/api/v1/jobs", json={"spec": {"command": ["python", "-c", "pass"]}}, headers=app.auth(token))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _mlflow_error(r, status: int, code: str) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code, body
    return body["message"]


def test_another_users_run_answers_as_a_ghost(app: InProc, world: dict) -> None:
    bob, run = app.auth(world["bob"]), world["run"]
    ghost = _mlflow_error(app.client.get(f"{ART}/runs/999999/artifacts/secret.txt", headers=bob),
                          404, "RESOURCE_DOES_NOT_EXIST")
    theirs = _mlflow_error(app.client.get(f"{ART}/runs/{run}/artifacts/secret.txt", headers=bob),
                           404, "RESOURCE_DOES_NOT_EXIST")
    assert theirs == ghost.replace("999999", str(run))  # nothing tells that the run exists
    for r in (app.client.get(ART, params={"path": f"runs/{run}/artifacts"}, headers=bob),
              app.client.put(f"{ART}/runs/{run}/artifacts/x.txt", content=b"bob's", headers=bob),
              app.client.delete(f"{ART}/runs/{run}/artifacts/secret.txt", headers=bob),
              app.client.get("/api/2.0/mlflow/artifacts/list", params={"run_id": str(run)}, headers=bob)):
        _mlflow_error(r, 404, "RESOURCE_DOES_NOT_EXIST")
    owner = app.client.get(f"{ART}/runs/{run}/artifacts/secret.txt", headers=app.auth(world["alice"]))
    assert owner.status_code == 200 and owner.content == b"alice's"  # still there, unchanged
    listed = app.client.get(ART, params={"path": f"runs/{run}/artifacts"}, headers=app.auth(world["alice"]))
    assert [f["path"] for f in listed.json()["files"]] == ["secret.txt"]


def test_no_token_is_refused(app: InProc, world: dict) -> None:
    _mlflow_error(app.client.get(f"{ART}/runs/{world['run']}/artifacts/secret.txt"), 401, "UNAUTHENTICATED")
    _mlflow_error(app.client.get(f"{ART}/runs/{world['run']}/artifacts/secret.txt",
                                 headers={"Authorization": "Bearer myrun.1.forged"}), 401, "UNAUTHENTICATED")


def test_a_jobs_run_token_reaches_its_own_run_only(app: InProc, world: dict) -> None:
    job_token, own, other = app.auth(world["job_token"]), world["job"], world["run"]
    r = app.client.put(f"{ART}/runs/{own}/artifacts/model/weights.bin", content=b"w" * 100, headers=job_token)
    assert r.status_code == 200, r.text
    listed = app.client.get(ART, params={"path": f"runs/{own}/artifacts/model"}, headers=job_token)
    assert listed.json() == {"files": [{"path": "weights.bin", "is_dir": False, "file_size": 100}]}
    # the same owner's other run is not the job's: as if it did not exist, for reading and writing
    for r in (app.client.get(f"{ART}/runs/{other}/artifacts/secret.txt", headers=job_token),
              app.client.put(f"{ART}/runs/{other}/artifacts/planted.txt", content=b"x", headers=job_token),
              app.client.delete(f"{ART}/runs/{other}/artifacts/secret.txt", headers=job_token),
              app.client.get(ART, params={"path": f"runs/{other}/artifacts"}, headers=job_token),
              app.client.get("/api/2.0/mlflow/artifacts/list", params={"run_id": str(other)}, headers=job_token)):
        _mlflow_error(r, 404, "RESOURCE_DOES_NOT_EXIST")
    assert not app.platform.storage.list(f"jobs/{other}/outputs/planted.txt")
    # and its outputs listing shows what it uploaded, under mlflow/
    outputs = app.client.get(f"/api/v1/jobs/{own}/outputs", headers=app.auth(world["alice"])).json()
    assert [f["path"] for f in outputs["files"]] == ["mlflow/model/weights.bin"]


@pytest.mark.parametrize("path", [
    "runs/{run}/artifacts/../../{job}/artifacts/x.txt",
    "runs/{run}/artifacts/a/../../x.txt",
    "runs/{run}/artifacts/./x.txt",
    "runs/{run}/artifacts/a//x.txt",
    "runs/{run}/artifacts/a\\..\\x.txt",
    "runs/{run}/artifacts/x%00.txt",
    "runs/{run}/artifacts//etc/passwd",
    "runs/{run}/../{job}/artifacts/x.txt",
    "jobs/{run}/outputs/x.txt",
    "runs/{run}/artifacts/x.modelyard-partial-1",
])
def test_traversal_and_odd_paths_are_refused(app: InProc, world: dict, path: str) -> None:
    path = path.format(run=world["run"], job=world["job"])
    alice = app.auth(world["alice"])
    dotted = "/./" in path or "/../" in path  # httpx folds those in a URL: test_a_raw_traversal_in_the_url sends them
    for r in () if dotted else (app.client.put(f"{ART}/{path}", content=b"x", headers=alice),
                                app.client.get(f"{ART}/{path}", headers=alice),
                                app.client.delete(f"{ART}/{path}", headers=alice)):
        _mlflow_error(r, 400, "INVALID_PARAMETER_VALUE")
    listed = app.client.get(ART, params={"path": path.replace("%00", "\x00")}, headers=alice)
    message = _mlflow_error(listed, 400, "INVALID_PARAMETER_VALUE")
    assert "artifact path" in message
    # nothing was written anywhere in the store but what the module's fixtures put there
    keys = [e.path for e in app.platform.storage.list("")]
    assert not [k for k in keys if k.endswith("x.txt") or "passwd" in k or "partial" in k], keys


def test_a_raw_traversal_in_the_url_is_refused(app: InProc, world: dict) -> None:
    """Unnormalised, as a hostile client sends it (httpx would fold the dots away)."""
    alice = app.auth(world["alice"])
    for raw in (f"{ART}/runs/{world['run']}/artifacts/%2e%2e/%2e%2e/{world['job']}/artifacts/x.txt",
                f"{ART}/runs/{world['run']}/artifacts/..%2f..%2f{world['job']}/artifacts/x.txt",
                f"{ART}/runs/{world['run']}/artifacts/a%5c..%5cx.txt"):
        r = app.client.put(raw, content=b"x", headers=alice)
        _mlflow_error(r, 400, "INVALID_PARAMETER_VALUE")
    assert not [e for e in app.platform.storage.list("") if e.path.endswith("x.txt")]


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(app: InProc, world: dict) -> None:
    alice, run = app.auth(world["alice"]), world["run"]
    declared = app.client.put(f"{ART}/runs/{run}/artifacts/big.bin", content=b"x" * (LIMIT + 1), headers=alice)
    assert "MODELYARD_MAX_ARTIFACT" in _mlflow_error(declared, 413, "RESOURCE_EXHAUSTED")

    def undeclared() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by, so it is counted as it comes
        for _ in range(LIMIT // 4096 + 2):
            yield b"y" * 4096

    streamed = app.client.put(f"{ART}/runs/{run}/artifacts/big.bin", content=undeclared(), headers=alice)
    _mlflow_error(streamed, 413, "RESOURCE_EXHAUSTED")
    names = [e.path for e in app.platform.storage.list(f"jobs/{run}")]
    assert not [n for n in names if "big.bin" in n], names  # no partial file either
    exact = app.client.put(f"{ART}/runs/{run}/artifacts/edge.bin", content=b"z" * LIMIT, headers=alice)
    assert exact.status_code == 200, exact.text
    app.client.delete(f"{ART}/runs/{run}/artifacts/edge.bin", headers=alice)


def test_a_folder_is_not_a_file(app: InProc, world: dict) -> None:
    job_token, own = app.auth(world["job_token"]), world["job"]
    r = app.client.get(f"{ART}/runs/{own}/artifacts/model", headers=job_token)
    _mlflow_error(r, 404, "RESOURCE_DOES_NOT_EXIST")
    _mlflow_error(app.client.put(f"{ART}/runs/{own}/artifacts", content=b"x", headers=job_token),
                  400, "INVALID_PARAMETER_VALUE")


def test_a_session_cookie_reads_but_writes_only_from_the_ui(app: InProc, world: dict) -> None:
    """The MLflow UI's ajax-api paths take the web session; a cross-site form cannot send the UI's header."""
    from fastapi.testclient import TestClient
    from servers import ui_sign_in

    browser = TestClient(app.client.app, raise_server_exceptions=False, follow_redirects=False)
    try:
        assert ui_sign_in(browser, world["alice"]).status_code == 303
        ajax = f"/ajax-api/2.0/mlflow-artifacts/artifacts/runs/{world['run']}/artifacts"
        read = browser.get(f"{ajax}/secret.txt")
        assert read.status_code == 200 and read.content == b"alice's"
        _mlflow_error(browser.put(f"{ajax}/forged.txt", content=b"x"), 401, "UNAUTHENTICATED")
        _mlflow_error(browser.delete(f"{ajax}/secret.txt"), 401, "UNAUTHENTICATED")
        assert browser.get(f"{ajax}/secret.txt").status_code == 200
        ui = browser.put(f"{ajax}/from-ui.txt", content=b"ok", headers={"X-Modelyard-UI": "1"})
        assert ui.status_code == 200, ui.text
        browser.delete(f"{ajax}/from-ui.txt", headers={"X-Modelyard-UI": "1"})
    finally:
        browser.close()
