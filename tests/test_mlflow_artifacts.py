"""MLflow artifacts through the server, with the real mlflow client against a real server: a file, a
folder, listings, downloads, a large file streamed both ways, deletion; and a real job whose own
MLflow client uploads with its run token, its artifacts then among its outputs (the API, ``modelyard
download``, the job page) beside the files its output folder synced, both kept where their paths meet.

One server and one job for the module; the client's own tests come after, on that job's run.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from serverproc import ServerProc, cli, start_server
from servers import ui_sign_in
from test_e2e_jobs import tar_gz

from modelyard.config import Settings
from modelyard.db import jobs as store_jobs
from modelyard.server.app import create_app, ensure_local_user
from modelyard.server.platform import Platform

PY = sys.executable
# A training script's own MLflow calls: MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN and MLFLOW_RUN_ID are
# all the platform gave it, and start_run() logs into the job's run. It writes a file of its own to
# mlflow/clash.txt in its output folder, and uploads another of that path, so both must survive.
JOB = """\
import os, pathlib, tempfile
import mlflow
out = pathlib.Path(os.environ["MODELYARD_OUTPUT_DIR"])
(out / "own.txt").write_text("synced")
(out / "mlflow").mkdir()
(out / "mlflow" / "clash.txt").write_text("synced")
work = pathlib.Path(tempfile.mkdtemp())
(work / "plots").mkdir()
(work / "metrics.json").write_text('{"acc": 0.9}')
(work / "clash.txt").write_text("uploaded")
(work / "plots" / "loss.csv").write_text("step,loss\\n1,0.5\\n")
with mlflow.start_run() as run:
    mlflow.log_artifact(str(work / "metrics.json"))
    mlflow.log_artifact(str(work / "clash.txt"))
    mlflow.log_artifacts(str(work / "plots"), "plots")
    print("run", run.info.run_id, run.info.artifact_uri, flush=True)
    print("listed", sorted(f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)), flush=True)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("mlflow-artifacts") / "home") as proc:
        yield proc


@pytest.fixture(scope="module")
def job(server: ServerProc) -> dict:
    with server.client() as c:
        key = c.upload_snapshot(io.BytesIO(tar_gz({"train.py": JOB.encode()})))["key"]
        submitted = c.submit_job({"command": [PY, "train.py"], "name": "mlflow-artifacts"}, snapshot=key)
        return c.wait_job(submitted["id"], timeout=90)


@pytest.fixture(scope="module")
def mlflow_env(server: ServerProc) -> Iterator[None]:
    """The test's own MLflow client: the owner's token, no retries (a failure shows at once)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", server.url)
        mp.setenv("MLFLOW_TRACKING_TOKEN", server.token)
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        import mlflow.tracking.fluent

        # the experiment an earlier module's test chose (set_experiment) is the client's for the whole
        # process; this server has no such experiment: start from MLflow's Default, as a fresh script does
        mlflow.tracking.fluent._active_experiment_id = None
        yield


def repo_for(job_id: int):  # type: ignore[no-untyped-def]
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    return MlflowArtifactsRepository(f"mlflow-artifacts:/runs/{job_id}/artifacts")


def logs(server: ServerProc, job_id: int) -> str:
    with server.client() as c:
        return "\n".join(line["text"] for line in c.job_logs(job_id, limit=1000)["lines"])


def test_a_jobs_own_client_uploads_into_its_run(server: ServerProc, job: dict) -> None:
    assert job["state"] == "succeeded", (job, logs(server, job["id"]))
    text = logs(server, job["id"])
    assert f"run {job['id']} mlflow-artifacts:/runs/{job['id']}/artifacts" in text, text
    assert "listed ['clash.txt', 'metrics.json', 'plots']" in text, text


def test_log_artifact_in_a_run_of_its_own(server: ServerProc, mlflow_env: None, tmp_path: Path) -> None:
    """A script outside any job: start_run() makes a run with no process, whose artifacts are its outputs."""
    import mlflow
    import mlflow.artifacts

    (tmp_path / "figs").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "figs" / "a.csv").write_text("1")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "notes.txt"))
        mlflow.log_artifacts(str(tmp_path / "figs"), "figs")
    run_id = run.info.run_id
    assert run.info.artifact_uri == f"mlflow-artifacts:/runs/{run_id}/artifacts"
    listed = mlflow.MlflowClient().list_artifacts(run_id)
    assert [(f.path, f.is_dir) for f in listed] == [("figs", True), ("notes.txt", False)]
    got = mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run_id}/figs", dst_path=str(tmp_path / "dl"))
    assert (Path(got) / "a.csv").read_text() == "1"
    with server.client() as c:
        outputs = c.list_outputs(int(run_id))
        assert sorted(f["path"] for f in outputs["files"]) == ["figs/a.csv", "notes.txt"]


def test_its_artifacts_are_among_its_outputs_beside_what_it_synced(server: ServerProc, job: dict, tmp_path: Path,
                                                                   mlflow_env: None) -> None:
    with server.client() as c:
        listing = c.list_outputs(job["id"])
        assert listing["attempt"] == 1
        assert {f["path"]: f["size"] for f in listing["files"]} == {
            "own.txt": 6, "mlflow/clash.txt": 6, "mlflow/metrics.json": 12, "mlflow/plots/loss.csv": 16}
        # where the paths meet, the listing gives the job's own file; the MLflow client still reads its upload
        clash = c.download_output(job["id"], "mlflow/clash.txt", tmp_path / "clash-synced.txt")
        assert clash.read_text() == "synced"
        metrics = c.download_output(job["id"], "mlflow/metrics.json", tmp_path / "metrics.json")
        assert metrics.read_text() == '{"acc": 0.9}'
    assert Path(repo_for(job["id"]).download_artifacts("clash.txt", str(tmp_path))).read_text() == "uploaded"

    done = cli(["download", str(job["id"]), "--to", str(tmp_path / "all")], server.env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "all" / "mlflow" / "plots" / "loss.csv").read_text() == "step,loss\n1,0.5\n"
    assert (tmp_path / "all" / "own.txt").read_text() == "synced"

    with httpx.Client(base_url=server.url, timeout=30) as browser:
        assert ui_sign_in(browser, server.token).status_code in (200, 303)
        page = browser.get(f"/ui/jobs/{job['id']}")
        assert page.status_code == 200 and "mlflow/metrics.json" in page.text and "own.txt" in page.text


def test_the_client_uploads_lists_downloads_and_deletes(job: dict, mlflow_env: None, tmp_path: Path) -> None:
    import mlflow.artifacts

    repo = repo_for(job["id"])
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "deep" / "b.txt").write_text("bb")
    (src / "deep" / "er" / "c.txt").write_text("ccc")
    repo.log_artifacts(str(src), "folder")
    repo.log_artifact(str(src / "a.txt"), "single/place")

    top = {(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts()}
    assert {("folder", True, None), ("single", True, None), ("metrics.json", False, 12)} <= top
    assert [(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts("folder/deep")] == [
        ("folder/deep/b.txt", False, 2), ("folder/deep/er", True, None)]
    assert repo.list_artifacts("folder/a.txt") == []  # a file lists as nothing, as in MLflow
    assert repo.list_artifacts("nowhere") == []

    got = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"mlflow-artifacts:/runs/{job['id']}/artifacts/folder", dst_path=str(tmp_path / "dl")))
    assert sorted(str(p.relative_to(got)) for p in got.rglob("*") if p.is_file()) == [
        "a.txt", "deep/b.txt", "deep/er/c.txt"]
    assert (got / "deep" / "er" / "c.txt").read_text() == "ccc"

    repo.delete_artifacts("folder/deep")
    assert [f.path for f in repo.list_artifacts("folder")] == ["folder/a.txt"]
    repo.delete_artifacts("single")
    assert "single" not in {f.path for f in repo.list_artifacts()}


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory, in bytes (Linux's VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_large_file_streams_both_ways(server: ServerProc, job: dict, mlflow_env: None, tmp_path: Path) -> None:
    big = tmp_path / "weights.bin"
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    size = 64 << 20
    with big.open("wb") as f:
        for i in range(size >> 20):  # in 1 MiB blocks, each a little different
            chunk = bytes([i]) + block[1:]
            f.write(chunk)
            digest.update(chunk)
    repo = repo_for(job["id"])
    before = peak_rss(server.proc.pid)
    repo.log_artifact(str(big), "checkpoints")
    assert [(f.path, f.file_size) for f in repo.list_artifacts("checkpoints")] == [
        ("checkpoints/weights.bin", size)]
    (tmp_path / "back").mkdir()
    back = Path(repo.download_artifacts("checkpoints/weights.bin", str(tmp_path / "back")))
    with back.open("rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == digest.hexdigest()
    # neither way did the server hold the file: its peak memory grew by well under the file's size
    grown = peak_rss(server.proc.pid) - before
    assert grown < size // 3, f"the server's peak memory grew {grown >> 20} MiB for a {size >> 20} MiB file"
    repo.delete_artifacts("checkpoints")


def test_the_tracking_apis_listing(server: ServerProc, job: dict) -> None:
    """GET /api/2.0/mlflow/artifacts/list, which the MLflow UI reads: paths from the run's root."""
    headers = {"Authorization": f"Bearer {server.token}"}
    r = httpx.get(f"{server.url}/api/2.0/mlflow/artifacts/list", params={"run_id": str(job["id"]), "path": "plots"},
                  headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"root_uri": f"mlflow-artifacts:/runs/{job['id']}/artifacts",
                        "files": [{"path": "plots/loss.csv", "is_dir": False, "file_size": 16}]}
    ghost = httpx.get(f"{server.url}/api/2.0/mlflow/artifacts/list", params={"run_id": "nope"}, headers=headers)
    assert ghost.status_code == 404 and ghost.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_on_s3_and_each_database(tmp_path: Path, database_url: str, s3_env: dict[str, str]) -> None:
    """The same paths over a real S3 API (moto) and SQLite or PostgreSQL, in process: a job's attempt
    keeps them beside its outputs; the upload streams in chunks (no Content-Length) to a multipart write."""
    home = tmp_path / "home"
    settings = Settings.from_env({"MODELYARD_HOME": str(home), "MODELYARD_DATABASE_URL": database_url,
                                  "MODELYARD_STORAGE_URL": f"s3://{s3_env['BUCKET']}/store",
                                  "MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G"})
    home.mkdir()
    platform = Platform(settings, server_url="http://127.0.0.1:1")  # no lifespan: the scheduler never runs
    token = ensure_local_user(platform, home)
    auth = {"Authorization": f"Bearer {token}"}
    c = TestClient(create_app(platform), raise_server_exceptions=False)  # not entered: no lifespan, no scheduler
    try:
        job = c.post("/api/v1/jobs", json={"spec": {"command": ["python", "-c", "pass"]}}, headers=auth).json()
        art = f"/api/2.0/mlflow-artifacts/artifacts/runs/{job['id']}/artifacts"
        queued = c.put(f"{art}/early.txt", content=b"x", headers=auth)
        assert queued.status_code == 400 and queued.json()["error_code"] == "INVALID_STATE"
        assert store_jobs.place(platform.db, job["id"], token="t", executor="local") is not None
        parts = [os.urandom(1 << 20) for _ in range(6)]  # over s3fs's 5 MiB block: a multipart upload
        r = c.put(f"{art}/ckpt/model.bin", content=iter(parts), headers=auth)
        assert r.status_code == 200, r.text
        listed = c.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": f"runs/{job['id']}/artifacts/ckpt"},
                       headers=auth).json()
        assert listed == {"files": [{"path": "model.bin", "is_dir": False, "file_size": 6 << 20}]}
        back = c.get(f"{art}/ckpt/model.bin", headers=auth)
        assert back.status_code == 200 and back.content == b"".join(parts)
        outputs = c.get(f"/api/v1/jobs/{job['id']}/outputs", headers=auth).json()
        assert outputs["attempt"] == 1 and [f["path"] for f in outputs["files"]] == ["mlflow/ckpt/model.bin"]
        assert platform.storage.exists(f"jobs/{job['id']}/attempts/1/mlflow/ckpt/model.bin")
        assert c.delete(f"{art}/ckpt", headers=auth).status_code == 200
        assert c.get(f"/api/v1/jobs/{job['id']}/outputs", headers=auth).json()["files"] == []
    finally:
        c.close()
        platform.close()
