"""The datasets API over a real server: bad input names its field and leaves nothing behind,
uploads, versions pinned at submit (restart and clone keep them), removal refused while a
queued job waits for a version, a start that fails clearly, the web pages, and the store query."""
from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import wait_for
from servers import ServerProcess, ui_sign_in
from test_datasets import make_csv, make_mnist, make_npz, write_idx

from modelyard.jobs import JobSpec
from modelyard.db import jobs as store_jobs
from modelyard.db.engine import Database
from modelyard.db.users import create_user

PY = sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("dsapi") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G", "MODELYARD_STOP_GRACE": "1"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def c(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def create(c: httpx.Client, name: str, source: Path | str, **options: object) -> dict:
    r = c.post("/datasets", json={"name": name, "source": str(source), **options})
    assert r.status_code == 201, r.text
    return r.json()


def error_of(r: httpx.Response, status: int = 422) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


def tar_of(path: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buf.getvalue()


def test_bad_input_names_the_field_and_leaves_nothing_half_made(server: ServerProcess, c: httpx.Client,
                                                                 tmp_path: Path) -> None:
    good = make_npz(tmp_path / "ok.npz")
    bad_idx = tmp_path / "bad-idx"
    bad_idx.mkdir()
    write_idx(bad_idx / "train-images-idx3-ubyte", np.zeros((10, 2, 2), np.uint8))
    write_idx(bad_idx / "train-labels-idx1-ubyte", np.zeros(9, np.uint8))
    cases = [
        ({"name": "a/b", "source": str(good)}, "name", "'/'"),
        ({"name": "x", "source": str(good), "split": "train=0.5,val=0.2"}, "split", "1"),
        ({"name": "x", "source": str(good), "format": "parquetish"}, "format", "unknown format"),
        ({"name": "x", "source": str(good), "format": "recordio"}, "format", "MXNet"),
        ({"name": "x", "source": str(tmp_path / "missing")}, "source", "no such file"),
        ({"name": "x", "source": str(bad_idx)}, "source", "9"),
        ({"name": "x"}, "source", "either"),
        ({"name": "x", "source": str(good), "upload": "0" * 32}, "source", "either"),
        ({"name": "x", "upload": "f" * 32}, "upload", "upload the source first"),
        ({"name": "x", "source": str(good), "seed": -1}, "seed", ""),
    ]
    for body, field, words in cases:
        err = error_of(c.post("/datasets", json=body))
        assert err["field"] == field and words in err["message"], (body, err)
    assert error_of(c.post("/datasets/uploads", content=b"not a tar at all" * 100))["field"] == "source"
    assert c.get("/datasets").json() == {"datasets": []}
    assert not list((server.home / "artifacts").rglob("manifest.json"))
    assert list((server.home / "uploads").iterdir()) == []
    assert error_of(c.get("/datasets/nope"), 404)["code"] == "not_found"
    assert error_of(c.get("/datasets/a.b/zz"))["field"] == "dataset"


def test_upload_create_show_download_remove(server: ServerProcess, c: httpx.Client, tmp_path: Path) -> None:
    table = make_csv(tmp_path / "rows.csv", n=50)
    r = c.post("/datasets/uploads", content=tar_of(table), headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 201, r.text
    up = r.json()["upload"]
    v = c.post("/datasets", json={"name": "rows", "upload": up, "split": {"train": 0.6, "test": 0.4},
                                  "label_column": "label", "description": "a table"}).json()
    assert v["source_kind"] == "csv" and v["source"].endswith("/rows.csv") and v["new"] is True
    assert {s["name"]: s["count"] for s in v["splits"]} == {"train": 30, "test": 20}
    assert not (server.home / "uploads" / up).exists()  # the unpacked upload goes once used

    shown = c.get(f"/datasets/rows/{v['version'][:6]}").json()  # a unique prefix picks the version
    assert shown["ref"] == v["ref"] and shown["jobs"] == [] and shown["description"] == "a table"
    f = shown["files"][0]
    got = c.get(f"/datasets/rows/{v['version']}/files/{f['path']}")
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == f["sha256"]
    assert error_of(c.get(f"/datasets/rows/{v['version']}/files/nope.csv"), 404)["code"] == "not_found"

    assert [x["ref"] for x in c.delete(f"/datasets/rows/{v['version']}").json()["removed"]] == [v["ref"]]
    assert error_of(c.get(f"/datasets/rows/{v['version']}"), 404)["field"] == "dataset"


def test_a_user_uploads_but_may_not_read_the_servers_files(server: ServerProcess, c: httpx.Client,
                                                           tmp_path: Path) -> None:
    token = c.post("/users", json={"name": "dana", "no_isolation": True}).json()["token"]
    npz = make_npz(tmp_path / "d.npz")
    with server.client(token=token) as dana:
        err = error_of(dana.post("/datasets", json={"name": "mine", "source": "/etc"}), 403)
        assert err["field"] == "source" and "upload" in err["message"]
        up = dana.post("/datasets/uploads", content=tar_of(npz)).json()["upload"]
        made = dana.post("/datasets", json={"name": "mine", "upload": up, "format": "npz"})
        assert made.status_code == 201, made.text
        assert dana.delete("/datasets/mine").status_code == 200


def test_versions_are_pinned_at_submit_kept_by_clone_and_protected_while_queued(
    server: ServerProcess, c: httpx.Client, tmp_path: Path,
) -> None:
    v1 = create(c, "pins", make_mnist(tmp_path / "m1", n_train=20, n_test=5), split="train=0.8,val=0.2")
    v2 = create(c, "pins", make_mnist(tmp_path / "m2", n_train=24, n_test=6), split="train=0.8,val=0.2")
    assert v1["version"] != v2["version"]
    assert [v["ref"] for v in c.get("/datasets/pins").json()["versions"]] == [v2["ref"], v1["ref"]]

    # a job that holds every CPU keeps the next ones queued
    blocker = c.post("/jobs", json={"spec": {"command": [PY, "-c", "import time; time.sleep(60)"],
                                             "resources": {"cpus": 4}}}).json()
    latest = c.post("/jobs", json={"spec": {"command": "true", "dataset": "pins"}}).json()
    older = c.post("/jobs", json={"spec": {"command": "true", "dataset": f"pins:{v1['version'][:5]}"}}).json()
    assert latest["dataset"] == v2["ref"] and older["dataset"] == v1["ref"]
    clone = c.post(f"/jobs/{older['id']}/clone", json={}).json()
    assert clone["dataset"] == v1["ref"]

    err = error_of(c.delete("/datasets/pins"), 409)
    assert err["field"] == "dataset" and f"job {latest['id']}" in err["message"]
    assert str(older["id"]) in err["message"] and str(clone["id"]) in err["message"]
    assert len(c.get("/datasets/pins").json()["versions"]) == 2  # refused as a whole: nothing removed

    # a version whose manifest vanished from the store fails the start, saying which dataset
    (server.home / "artifacts" / "datasets" / "pins" / v1["version"] / "manifest.json").unlink()
    c.post(f"/jobs/{clone['id']}/stop")
    c.post(f"/jobs/{blocker['id']}/stop")
    wait_for(lambda: c.get(f"/jobs/{latest['id']}").json()["state"] == "succeeded", timeout=60, what="latest job")
    failed = wait_for(lambda: (j := c.get(f"/jobs/{older['id']}").json())["state"] == "failed" and j, timeout=60,
                      what="older job to fail")
    assert failed["attempts"][-1]["reason"] == "start_failed"
    assert f"dataset {v1['ref']}" in failed["message"] and "not found" in failed["message"]
    restarted = c.post(f"/jobs/{latest['id']}/restart").json()
    assert restarted["dataset"] == v2["ref"]
    wait_for(lambda: c.get(f"/jobs/{latest['id']}").json()["state"] == "succeeded", timeout=60, what="restart")
    assert [j["id"] for j in c.get(f"/datasets/pins/{v2['version']}").json()["jobs"]] == [latest["id"]]


def test_datasets_pages_and_the_new_job_picker(server: ServerProcess, c: httpx.Client, tmp_path: Path) -> None:
    v = create(c, "pics", make_npz(tmp_path / "p.npz", n=20), split="train=0.5,val=0.5", format="npz")
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        ui_sign_in(browser, server.token)
        listing = browser.get("/ui/datasets")
        assert listing.status_code == 200 and 'href="/ui/datasets/pics"' in listing.text
        assert 'href="/ui/datasets"' in listing.text  # in the top bar
        page = browser.get("/ui/datasets/pics")
        assert page.status_code == 200 and v["ref"] in page.text and "train" in page.text
        assert browser.get("/ui/datasets/pics", params={"format": "json"}).json()["latest"] == v["ref"]
        assert browser.get("/ui/datasets/nothing-here").status_code == 404
        form = browser.get("/ui/new")
        assert f'<option value="{v["ref"]}">' in form.text and '<option value="pics">' in form.text
        choices = browser.get("/ui/new", params={"format": "json"}).json()["datasets"]
        assert {"name": "pics", "versions": [v["version"]]} in choices
    js = (Path(__file__).parents[1] / "src/modelyard/server/web/static/js/form.js").read_text()
    assert "spec.dataset" in js


def test_the_store_knows_which_jobs_use_a_version(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    try:
        user, _ = create_user(db, "u")
        spec = JobSpec(command="true", dataset="d")
        a = store_jobs.create_job(db, user=user, spec=spec, snapshot_key=None, dataset="d:aaaa1111bbbb")
        b = store_jobs.create_job(db, user=user, spec=spec, snapshot_key=None, dataset="d:aaaa1111bbbb")
        store_jobs.create_job(db, user=user, spec=spec, snapshot_key=None, dataset="d:cccc2222dddd")
        store_jobs.request_stop(db, b)
        assert store_jobs.get_job(db, a.id).dataset == "d:aaaa1111bbbb"
        assert [j.id for j in store_jobs.jobs_using_dataset(db, "d", "aaaa1111bbbb")] == [a.id, b.id]
        assert [j.id for j in store_jobs.jobs_using_dataset(db, "d", "aaaa1111bbbb", active_only=True)] == [a.id]
        other, _ = create_user(db, "v")
        assert store_jobs.jobs_using_dataset(db, "d", "aaaa1111bbbb", user=other) == []
    finally:
        db.dispose()


@pytest.mark.parametrize("source, allowed", [
    ("s3://team/open/d.npz", True), ("s3://team/open", True), ("s3://team/opener/d.npz", False),
    ("s3://team/open/../secret/d.npz", False), ("simplecache::s3://team/open/d.npz", False),
    ("s3://other/open/d.npz", False), ("https://data.example.com/mnist/x.gz", True),
    ("https://data.example.com/mnistx", False),
])
def test_which_urls_a_user_may_name(source: str, allowed: bool) -> None:
    from modelyard.server.routes_datasets import allowed_source

    assert allowed_source(source, ("s3://team/open", "https://data.example.com/mnist/")) is allowed
    assert not allowed_source(source, ())


def test_a_user_imports_only_from_the_urls_the_admin_opened(s3_env: dict[str, str], tmp_path: Path) -> None:
    import boto3

    bucket = s3_env["BUCKET"]
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    body = make_npz(tmp_path / "d.npz").read_bytes()
    for key in ("open/d.npz", "closed/d.npz"):
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    aws = {k: v for k, v in s3_env.items() if k != "BUCKET"}
    srv = ServerProcess(tmp_path / "home", env={**aws, "MODELYARD_DATASET_SOURCES": f"s3://{bucket}/open"}).start()
    try:
        with srv.client() as admin:
            token = admin.post("/users", json={"name": "erin", "no_isolation": True}).json()["token"]
            with srv.client(token=token) as erin:
                made = erin.post("/datasets", json={"name": "opened", "source": f"s3://{bucket}/open/d.npz"})
                assert made.status_code == 201, made.text
                err = error_of(erin.post("/datasets", json={"name": "shut", "source": f"s3://{bucket}/closed/d.npz"}),
                               403)
                assert err["field"] == "source" and f"s3://{bucket}/open" in err["message"]
                assert error_of(erin.get("/datasets/shut"), 404)["code"] == "not_found"  # nothing half-made
            # an admin may read what the server can
            assert admin.post("/datasets", json={"name": "shut", "source": f"s3://{bucket}/closed/d.npz"}).status_code \
                == 201
    finally:
        srv.stop()
