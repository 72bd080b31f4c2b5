"""Outputs per attempt, resume on retry, final/, clone --resume --code: real server, supervisors, jobs, CLI.

One server for the module; the job that fails at step 3 and resumes on its retry runs once
(``resumed``), and the tests read what it left.
"""
from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProc, cli, start_server
from test_e2e_jobs import tar_gz

from modelyard.artifacts.store import ArtifactStore
from modelyard.client import Client, ClientError
from modelyard.config import Settings

PY = sys.executable
# Counts steps 0..5 with a checkpoint after each; attempt 1 dies at step 3. A later attempt starts
# after the checkpoint in MODELYARD_RESUME_DIR, and the last one leaves its model in final/.
COUNTER = """\
import json, os, pathlib, sys
out = pathlib.Path(os.environ["MODELYARD_OUTPUT_DIR"])
attempt = int(os.environ["MODELYARD_ATTEMPT"])
resume = os.environ.get("MODELYARD_RESUME_DIR")
start = 0
if resume:
    ckpt = pathlib.Path(resume) / "ckpt.json"
    start = json.loads(ckpt.read_text())["step"] + 1
    print("resumed at", start, "mode", oct(ckpt.stat().st_mode & 0o777), flush=True)
for step in range(start, 6):
    print(json.dumps({"metric": "step", "value": step, "step": step}), flush=True)
    (out / "ckpt.json").write_text(json.dumps({"step": step, "attempt": attempt}))
    if attempt == 1 and step == 3:
        sys.exit(3)
(out / "final").mkdir()
(out / "final" / "model.txt").write_text(f"trained to {step}")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("outputs") / "home") as proc:
        yield proc


@pytest.fixture(scope="module")
def resumed(server: ServerProc) -> dict:
    """The counter job with one retry, ended: attempt 1 failed at step 3, attempt 2 finished."""
    with server.client() as c:
        key = c.upload_snapshot(io.BytesIO(tar_gz({"train.py": COUNTER.encode()})))["key"]
        job = c.submit_job({"command": [PY, "train.py"], "retries": 1, "name": "counter"}, snapshot=key)
        return c.wait_job(job["id"], timeout=90)


def logs(c: Client, job_id: int, attempt: int) -> list[str]:
    return [line["text"] for line in c.job_logs(job_id, attempt=attempt, limit=10000)["lines"]]


def test_a_retry_resumes_from_the_failed_attempts_checkpoint(server: ServerProc, resumed: dict,
                                                             tmp_path: Path) -> None:
    job_id = resumed["id"]
    assert resumed["state"] == "succeeded", resumed
    assert [(a["number"], a["exit_code"]) for a in resumed["attempts"]] == [(1, 3), (2, 0)]
    with server.client() as c:
        assert "resumed at 4 mode 0o444" in logs(c, job_id, 2)  # read-only, after attempt 1's last checkpoint
        assert not any(t.startswith("resumed") for t in logs(c, job_id, 1))
        # the steps go on from where attempt 1 stopped: none done twice, none missed
        assert [p["step"] for p in c.metrics(job_id)["step"]] == [0, 1, 2, 3, 4, 5]
        first = c.list_outputs(job_id, attempt=1)
        assert first["attempt"] == 1 and [f["path"] for f in first["files"]] == ["ckpt.json"]
        # attempt 1's checkpoint is as it left it: attempt 2 wrote its own outputs, not over these
        kept = c.download_output(job_id, "ckpt.json", tmp_path / "ckpt-1.json", attempt=1)
        assert json.loads(kept.read_text()) == {"step": 3, "attempt": 1}
        second = c.list_outputs(job_id, attempt=2)
        assert {f["path"]: f["final"] for f in second["files"]} == {"ckpt.json": False, "final/model.txt": True}


def test_the_jobs_outputs_are_its_latest_attempts(server: ServerProc, resumed: dict) -> None:
    with server.client() as c:
        listing = c.list_outputs(resumed["id"])
        assert listing["attempt"] == 2 and listing["attempts"] == [1, 2] and listing["model_attempts"] == [2]
        assert [f["path"] for f in listing["files"]] == ["ckpt.json", "final/model.txt"]
        model = c.list_outputs(resumed["id"], final=True)
        assert model["attempt"] == 2 and [f["path"] for f in model["files"]] == ["final/model.txt"]
        assert c.list_outputs(resumed["id"], attempt=1, final=True)["files"] == []
        with pytest.raises(ClientError) as e:
            c.list_outputs(resumed["id"], attempt=3)
        assert e.value.status == 404 and "attempt 3" in str(e.value)


def test_download_takes_an_attempt_or_only_the_model(server: ServerProc, resumed: dict, tmp_path: Path) -> None:
    job_id = str(resumed["id"])
    latest = cli(["download", job_id, "--to", str(tmp_path / "latest")], server.env)
    assert latest.returncode == 0, latest.stderr
    assert json.loads((tmp_path / "latest" / "ckpt.json").read_text())["step"] == 5
    assert (tmp_path / "latest" / "final" / "model.txt").read_text() == "trained to 5"
    first = cli(["download", job_id, "--attempt", "1", "--to", str(tmp_path / "first")], server.env)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "first").iterdir()) == ["ckpt.json"]
    assert json.loads((tmp_path / "first" / "ckpt.json").read_text()) == {"step": 3, "attempt": 1}
    model = cli(["download", job_id, "--final", "--to", str(tmp_path / "model"), "--json"], server.env)
    assert model.returncode == 0, model.stderr
    assert json.loads(model.stdout)["attempt"] == 2
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["model.txt"]  # the model itself, not final/
    none = cli(["download", job_id, "--final", "--attempt", "1", "--to", str(tmp_path / "none")], server.env)
    assert none.returncode == 1 and "no model" in none.stderr and "attempt 1" in none.stderr


def test_clone_resumes_with_new_code_from_a_folder(server: ServerProc, resumed: dict, tmp_path: Path) -> None:
    code = tmp_path / "round2"
    code.mkdir()
    (code / "finetune.py").write_text(
        "import os, pathlib\nr = pathlib.Path(os.environ['MODELYARD_RESUME_DIR'])\n"
        "print('round 2 from', (r / 'final' / 'model.txt').read_text(), flush=True)\n")
    done = cli(["clone", str(resumed["id"]), "--resume", "--code", str(code), "--json", "--", PY, "finetune.py"],
               server.env)
    assert done.returncode == 0, done.stderr
    clone = json.loads(done.stdout)
    assert clone["resume_from"] == resumed["id"]
    with server.client() as c:
        assert c.wait_job(clone["id"], timeout=60)["state"] == "succeeded"
        assert "round 2 from trained to 5" in logs(c, clone["id"], 1)
    missing = cli(["clone", str(resumed["id"]), "--code", str(tmp_path / "nowhere")], server.env)
    assert missing.returncode != 0 and "code" in missing.stderr and "not a folder" in missing.stderr


def test_clone_through_the_api_refuses_a_snapshot_nobody_uploaded(server: ServerProc, resumed: dict) -> None:
    with server.client() as c, pytest.raises(ClientError) as e:
        c.clone_job(resumed["id"], resume=True, snapshot="snapshots/" + "0" * 64 + ".tar.gz")
    assert e.value.status == 422 and e.value.field == "snapshot"


def test_a_job_from_before_per_attempt_outputs_keeps_its_outputs(server: ServerProc) -> None:
    with server.client() as c:
        job = c.submit_job({"command": [PY, "-c", "pass"]})
        assert c.wait_job(job["id"], timeout=60)["state"] == "succeeded"
        # as an older server kept them: one folder for every attempt of the job
        store = ArtifactStore(Settings.from_env({"MODELYARD_HOME": str(server.home)}).storage_url)
        store.put_bytes(b"old weights", f"jobs/{job['id']}/outputs/model.bin")
        listing = c.list_outputs(job["id"])
        assert listing["attempt"] is None and [f["path"] for f in listing["files"]] == ["model.bin"]
        dest = c.download_output(job["id"], "model.bin", server.home / "old-model.bin")
        assert dest.read_bytes() == b"old weights"
