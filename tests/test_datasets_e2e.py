"""The seeds' flow end to end: import MNIST-like IDX files as a split, npz-formatted dataset,
train on it as a job that reads MODELYARD_DATA_DIR, reuse the cache, and remove the version
only once no job uses it. A real server subprocess, the real CLI, real supervisors.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from serverproc import cli, clean_env
from servers import ServerProcess
from test_datasets import make_mnist

PY = sys.executable
# The job: list each split folder, load its npz, print what it saw as one JSON line.
TRAIN = """
import json, os, sys
from pathlib import Path
import numpy as np
root = Path(os.environ["MODELYARD_DATA_DIR"])
seen = {"data_dir": str(root), "folders": sorted(p.name for p in root.iterdir() if p.is_dir())}
for split in ("train", "val"):
    with np.load(root / split / f"{split}.npz") as z:
        seen[split] = [int(len(z["x"])), int(len(z["y"])), list(z["x"].shape[1:])]
gate = os.environ.get("GATE")
if gate:
    while not Path(gate).exists():
        import time; time.sleep(0.05)
print("SEEN " + json.dumps(seen))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("ds") / "home", env={"MODELYARD_STOP_GRACE": "2"}).start()
    yield srv
    srv.stop()


def env_for(server: ServerProcess, **extra: str) -> dict[str, str]:
    """A CLI talking to ``server`` over HTTP, as from another machine: local sources are uploaded."""
    return clean_env(server.home.parent / "client-home", MODELYARD_URL=server.url, MODELYARD_TOKEN=server.token,
                     **extra)


def ok(done) -> dict:  # type: ignore[no-untyped-def]
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("code")
    (wd / "train.py").write_text(TRAIN)
    return wd


def wait_end(server: ServerProcess, job_id: int) -> None:
    with server.client() as c:
        def done() -> bool:
            state = c.get(f"/jobs/{job_id}").json()["state"]
            assert state in ("queued", "starting", "running", "succeeded"), state
            return state == "succeeded"
        wait_for(done, timeout=60, what=f"job {job_id} to succeed")


def seen(server: ServerProcess, job_id: int) -> dict:
    with server.client() as c:
        lines = c.get(f"/jobs/{job_id}/logs", params={"limit": 10000}).json()["lines"]
    found = [json.loads(ln["text"][5:]) for ln in lines if ln["text"].startswith("SEEN ")]
    assert found, [ln["text"] for ln in lines]
    return found[0]


def notes(server: ServerProcess, job_id: int) -> list[str]:
    with server.client() as c:
        return [ln["text"] for ln in c.get(f"/jobs/{job_id}/logs").json()["lines"] if "dataset " in ln["text"]]


def test_import_split_format_train_reuse_and_remove(server: ServerProcess, workdir: Path, tmp_path: Path) -> None:
    env = env_for(server)
    src = make_mnist(tmp_path / "mnist", n_train=40, n_test=10)  # 50 records, 10 classes

    version = ok(cli(["dataset", "create", "digits", str(src), "--split", "train=0.8,val=0.2", "--format", "npz",
                      "--description", "tiny MNIST", "--json"], env))
    ref = version["ref"]
    assert version["new"] is True and version["format"] == "npz" and version["source_kind"] == "idx"
    assert {s["name"]: s["count"] for s in version["splits"]} == {"train": 40, "val": 10}
    assert all(sum(s["labels"].values()) == s["count"] for s in version["splits"])  # stratified, counted
    listed = ok(cli(["dataset", "ls", "--json"], env))["datasets"]
    assert [(d["name"], d["versions"], d["latest"]["ref"]) for d in listed] == [("digits", 1, ref)]
    shown = ok(cli(["dataset", "show", "digits", "--json"], env))
    assert shown["latest"] == ref and shown["versions"][0]["jobs"] == []
    assert {f["path"] for f in shown["versions"][0]["files"]} == {"train/train.npz", "val/val.npz"}
    with server.client() as c:  # the same source again is the same version, not a new one
        again = c.post("/datasets", json={"name": "digits", "source": str(src), "split": "train=0.8,val=0.2",
                                          "format": "npz"}).json()
    assert again["ref"] == ref and again["new"] is False

    # a job on the latest version: pinned at submit, materialised before the command
    job = ok(cli(["submit", "--dataset", "digits", "--json", "--", PY, "train.py"], env, cwd=workdir))
    assert job["dataset"] == ref and job["dataset_requested"] == "digits"
    wait_end(server, job["id"])
    first = seen(server, job["id"])
    assert first["folders"] == ["train", "val"]
    assert first["train"] == [40, 40, [4, 5]] and first["val"] == [10, 10, [4, 5]]
    assert Path(first["data_dir"]) == server.home / "cache" / "datasets" / "digits" / version["version"]
    assert any("fetched" in n for n in notes(server, job["id"]))
    cached = Path(first["data_dir"]) / "train" / "train.npz"
    inode, mtime = cached.stat().st_ino, cached.stat().st_mtime_ns

    # a second job on the same version reads the same cached copy: nothing fetched again
    job2 = ok(cli(["submit", "--dataset", ref, "--json", "--", PY, "train.py"], env, cwd=workdir))
    wait_end(server, job2["id"])
    assert seen(server, job2["id"]) == first
    assert any("already in the cache" in n for n in notes(server, job2["id"]))
    assert (cached.stat().st_ino, cached.stat().st_mtime_ns) == (inode, mtime)

    # removal is refused while a job that uses the version runs, and allowed after it ended
    gate = tmp_path / "gate"
    job3 = ok(cli(["submit", "--dataset", "digits", "--env", f"GATE={gate}", "--json", "--", PY, "train.py"],
                  env, cwd=workdir))
    with server.client() as c:
        wait_for(lambda: c.get(f"/jobs/{job3['id']}").json()["state"] == "running", timeout=60, what="job 3 to run")
    refused = cli(["dataset", "rm", ref], env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: dataset: ") and f"job {job3['id']}" in refused.stderr
    human = cli(["dataset", "show", ref], env)  # still there, whole, with the jobs that used it
    assert human.returncode == 0 and "jobs that used it" in human.stdout and "train/train.npz" in human.stdout
    with server.client() as c:
        assert [j["id"] for j in c.get(f"/datasets/digits/{version['version']}").json()["jobs"]] == [
            job["id"], job2["id"], job3["id"]]

    gate.touch()
    wait_end(server, job3["id"])
    removed = ok(cli(["dataset", "rm", ref, "--json"], env))
    assert [v["ref"] for v in removed["removed"]] == [ref]
    with server.client() as c:
        assert c.get("/datasets").json()["datasets"] == []
        # the ended jobs keep the version they used on record
        assert c.get(f"/jobs/{job['id']}").json()["dataset"] == ref


def test_unknown_dataset_at_submit_names_the_field(server: ServerProcess, workdir: Path) -> None:
    env = env_for(server)
    done = cli(["submit", "--dataset", "no-such-data", "--", PY, "train.py"], env, cwd=workdir)
    assert done.returncode == 1 and done.stderr.strip().startswith("error: dataset: "), done.stderr
    bad = cli(["submit", "--dataset", "a/b", "--", PY, "train.py"], env, cwd=workdir)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: dataset: "), bad.stderr
    with server.client() as c:
        r = c.post("/jobs", json={"spec": {"command": "true", "dataset": "no-such-data:abcd"}})
        assert r.status_code == 422 and r.json()["error"]["field"] == "dataset"
        assert c.get("/jobs").json()["total"] == 0 or all(
            j["dataset_requested"] != "no-such-data" for j in c.get("/jobs").json()["jobs"])


def test_a_dataset_on_s3_end_to_end(s3_env: dict[str, str], tmp_path: Path, workdir: Path) -> None:
    storage = f"s3://{s3_env['BUCKET']}/platform"
    aws = {k: v for k, v in s3_env.items() if k != "BUCKET"}
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_STORAGE_URL": storage, **aws}).start()
    try:
        env = env_for(srv)
        src = make_mnist(tmp_path / "mnist", n_train=30, n_test=10, gz=True)
        version = ok(cli(["dataset", "create", "mnist", str(src), "--split", "train=0.75,val=0.25",
                          "--format", "npz", "--json"], env))
        with srv.client() as c:  # no snapshot: the job runs in its workdir
            job = c.post("/jobs", json={"spec": {"command": [PY, "train.py"], "workdir": str(workdir),
                                                 "dataset": "mnist"}}).json()
        assert job["dataset"] == version["ref"]
        wait_end(srv, job["id"])
        got = seen(srv, job["id"])
        assert got["train"][0] == 30 and got["val"][0] == 10
    finally:
        srv.stop()
