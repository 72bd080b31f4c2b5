"""A job's whole life through a real server subprocess, real supervisors, real jobs."""
from __future__ import annotations

import io
import json
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import wait_for
from servers import ServerProcess

PY = sys.executable
CAPACITY = "gpus=2,cpus=8,memory=16G"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_CAPACITY": CAPACITY, "MODELYARD_STOP_GRACE": "2"}).start()
    yield srv
    srv.stop()


def submit(c: httpx.Client, command: list[str] | str, **spec: object) -> dict:
    r = c.post("/jobs", json={"spec": {"command": command, **spec}})
    assert r.status_code == 201, r.text
    return r.json()


def state_of(c: httpx.Client, job_id: int) -> str:
    return c.get(f"/jobs/{job_id}").json()["state"]


def wait_state(c: httpx.Client, job_id: int, *states: str, timeout: float = 60) -> dict:
    allowed = {"queued", "starting", "running", "stopping", *states}

    def check() -> dict | None:
        job = c.get(f"/jobs/{job_id}").json()
        assert job["state"] in allowed, f"unexpected state {job['state']}: {job}"
        return job if job["state"] in states else None

    return wait_for(check, timeout=timeout, what=f"job {job_id} to be {states}")  # type: ignore[return-value]


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A code snapshot as the CLI uploads it: a .tar.gz of the given files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def all_logs(c: httpx.Client, job_id: int, attempt: int | None = None) -> list[dict]:
    params = {"attempt": attempt} if attempt else {}
    return c.get(f"/jobs/{job_id}/logs", params={**params, "limit": 10000}).json()["lines"]


def test_a_job_runs_with_the_contract_and_reports_logs_metrics_outputs(server: ServerProcess) -> None:
    code = (
        "import json, os, sys\n"
        "print('hello')\n"
        "print(json.dumps({'metric': 'loss', 'value': 0.5, 'step': 1}))\n"
        "print(json.dumps({'metric': 'loss', 'value': 'bad'}))\n"
        "print('oops', file=sys.stderr)\n"
        "out = os.environ['MODELYARD_OUTPUT_DIR']\n"
        "open(os.path.join(out, 'model.bin'), 'wb').write(b'weights')\n"
        "print('vars', os.environ['MODELYARD_JOB_ID'], os.environ['MODELYARD_ATTEMPT'],"
        " repr(os.environ['CUDA_VISIBLE_DEVICES']), os.environ.get('MY_VAR'))\n"
    )
    with server.client() as c:
        job = submit(c, [PY, "-c", code], env={"MY_VAR": "x"}, name="contract")
        done = wait_state(c, job["id"], "succeeded")
        assert done["exit_code"] == 0 and done["attempts"][0]["exit_code"] == 0
        lines = all_logs(c, job["id"])
        # stdout and stderr are two pipes read by two threads: order is kept within a stream only
        stdout = [l["text"] for l in lines if l["stream"] == "stdout"]
        assert stdout[:2] == ["hello", json.dumps({"metric": "loss", "value": "bad"})]
        assert [l["text"] for l in lines if l["stream"] == "stderr"] == ["oops"]
        assert f"vars {job['id']} 1 '' x" in stdout
        assert c.get(f"/jobs/{job['id']}/metrics").json() == {
            "loss": [{"value": 0.5, "step": 1, "epoch": None, "time": pytest.approx(0, abs=2e9)}]}
        files = c.get(f"/jobs/{job['id']}/outputs").json()["files"]
        assert [f["path"] for f in files] == ["model.bin"]
        assert c.get(f"/jobs/{job['id']}/outputs/model.bin").content == b"weights"
        assert c.get(f"/jobs/{job['id']}/outputs/missing.bin").status_code == 404
        events = [(e["from"], e["to"]) for e in c.get(f"/jobs/{job['id']}/events").json()["events"]]
        assert events == [(None, "queued"), ("queued", "starting"), ("starting", "running"), ("running", "succeeded")]


def test_gpus_are_given_exactly_and_never_shared(server: ServerProcess) -> None:
    code = "import os, time; print('gpu=' + os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep(60)"
    with server.client() as c:
        a = submit(c, [PY, "-c", code], resources={"gpus": 1})
        b = submit(c, [PY, "-c", code], resources={"gpus": 1})
        waiting = submit(c, [PY, "-c", code], resources={"gpus": 1})
        for j in (a, b):
            wait_for(lambda j=j: any(l["text"].startswith("gpu=") for l in all_logs(c, j["id"])), 30)
        seen = {next(l["text"] for l in all_logs(c, j["id"]) if l["text"].startswith("gpu=")) for j in (a, b)}
        assert seen == {"gpu=0", "gpu=1"}
        assert state_of(c, waiting["id"]) == "queued"
        c.post(f"/jobs/{a['id']}/stop")
        wait_state(c, a["id"], "stopped")
        wait_for(lambda: any(l["text"].startswith("gpu=") for l in all_logs(c, waiting["id"])), 30)
        freed = next(l["text"] for l in next(iter([all_logs(c, a["id"])])) if l["text"].startswith("gpu="))
        assert any(l["text"] == freed for l in all_logs(c, waiting["id"]))
        for j in (b, waiting):
            c.post(f"/jobs/{j['id']}/stop")
        for j in (b, waiting):
            wait_state(c, j["id"], "stopped")


def test_a_job_that_can_never_fit_is_refused_naming_the_resource(server: ServerProcess) -> None:
    with server.client() as c:
        r = c.post("/jobs", json={"spec": {"command": ["true"], "resources": {"gpus": 3}}})
        assert r.status_code == 422
        assert r.json()["error"]["field"] == "resources.gpus" and "3" in r.json()["error"]["message"]
        r = c.post("/jobs", json={"spec": {"command": ["true"], "resources": {"gpus": -1}}})
        assert r.status_code == 422 and r.json()["error"]["field"].endswith("resources.gpus")
        r = c.post("/jobs", json={"spec": {"command": ["true"], "resources": {"memory": "1T"}}})
        assert r.status_code == 422 and r.json()["error"]["field"] == "resources.memory"
        assert c.get("/jobs").json()["total"] == 0


def test_max_runtime_kills_the_process_group_and_times_out(server: ServerProcess) -> None:
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            "print('started', flush=True); time.sleep(300)\n")
    with server.client() as c:
        job = submit(c, [PY, "-c", code], max_runtime=2)
        done = wait_state(c, job["id"], "timed_out", timeout=30)
        assert done["attempts"][0]["reason"] == "max_runtime"


def test_stop_restart_and_clone_with_resume(server: ServerProcess) -> None:
    code = ("import os, pathlib, time\n"
            "out = pathlib.Path(os.environ['MODELYARD_OUTPUT_DIR'])\n"
            "resume = os.environ.get('MODELYARD_RESUME_DIR')\n"
            "print('resume', sorted(os.listdir(resume)) if resume else None, flush=True)\n"
            "(out / f\"ckpt-{os.environ['MODELYARD_ATTEMPT']}.txt\").write_text('x')\n"
            "print('ready', flush=True); time.sleep(300)\n")
    with server.client() as c:
        job = submit(c, [PY, "-c", code], sync_interval=600)
        wait_for(lambda: any(l["text"] == "ready" for l in all_logs(c, job["id"])), 30)
        assert c.post(f"/jobs/{job['id']}/restart").status_code == 409
        stopped = c.post(f"/jobs/{job['id']}/stop").json()
        assert stopped["state"] in ("stopping", "stopped")
        wait_state(c, job["id"], "stopped")
        # synced at the end, although the sync interval was never reached
        assert [f["path"] for f in c.get(f"/jobs/{job['id']}/outputs").json()["files"]] == ["ckpt-1.txt"]
        assert c.post(f"/jobs/{job['id']}/stop").status_code == 409

        again = c.post(f"/jobs/{job['id']}/restart").json()
        assert again["state"] == "queued"
        # attempt 2 exists only once the scheduler has placed it: its log answers 404 until then
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["attempt"] == 2, 30, what="attempt 2 to be placed")
        wait_for(lambda: any(l["text"] == "ready" for l in all_logs(c, job["id"], 2)), 30)
        # the restart resumes from attempt 1's outputs
        assert "resume ['ckpt-1.txt']" in [l["text"] for l in all_logs(c, job["id"], 2)]
        c.post(f"/jobs/{job['id']}/stop")
        wait_state(c, job["id"], "stopped")
        assert len(all_logs(c, job["id"], 1)) >= 2  # attempt 1 keeps its own log
        # and its own outputs: attempt 2's went beside them, not over them
        assert [f["path"] for f in c.get(f"/jobs/{job['id']}/outputs", params={"attempt": 1}).json()["files"]] == \
            ["ckpt-1.txt"]
        assert [f["path"] for f in c.get(f"/jobs/{job['id']}/outputs").json()["files"]] == ["ckpt-2.txt"]

        clone = c.post(f"/jobs/{job['id']}/clone", json={"resume": True}).json()
        assert clone["id"] != job["id"] and clone["resume_from"] == job["id"]
        wait_for(lambda: any(l["text"] == "ready" for l in all_logs(c, clone["id"])), 30)
        # a clone resumes from the job's outputs: its latest attempt's
        assert "resume ['ckpt-2.txt']" in [l["text"] for l in all_logs(c, clone["id"])]
        c.post(f"/jobs/{clone['id']}/stop")
        wait_state(c, clone["id"], "stopped")


def test_a_snapshot_is_what_the_job_runs(server: ServerProcess, tmp_path: Path) -> None:
    snapshot = tar_gz({"train.py": b"print('from the snapshot')\n"})
    with server.client() as c:
        r = c.post("/snapshots", content=snapshot, headers={"Content-Type": "application/gzip"})
        assert r.status_code == 201, r.text
        job = c.post("/jobs", json={"spec": {"command": [PY, "train.py"]}, "snapshot": r.json()["key"]}).json()
        wait_state(c, job["id"], "succeeded")
        assert [l["text"] for l in all_logs(c, job["id"])] == ["from the snapshot"]
        bad = c.post("/jobs", json={"spec": {"command": ["true"]}, "snapshot": "snapshots/nope.tar.gz"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "snapshot"


def test_a_dead_supervisor_is_lost_and_retried(server: ServerProcess) -> None:
    import os
    import signal

    code = "import os, time; print('pid', os.getppid(), flush=True); time.sleep(300)"
    with server.client() as c:
        job = submit(c, [PY, "-c", code], retries=1)
        line = wait_for(lambda: next((l["text"] for l in all_logs(c, job["id"]) if l["text"].startswith("pid")), None), 30)
        os.kill(int(str(line).split()[1]), signal.SIGKILL)  # the supervisor, not the job
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["attempt"] == 2, 30, what="a second attempt")
        first = c.get(f"/jobs/{job['id']}").json()["attempts"][0]
        assert first["state"] == "lost" and first["reason"] == "supervisor_lost"
        c.post(f"/jobs/{job['id']}/stop")
        wait_state(c, job["id"], "stopped", "lost")


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []
    failures_left = 1

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.failures_left > 0:  # the first delivery fails: the sender must retry
            _Receiver.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhooks_are_posted_on_final_states(tmp_path: Path) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    # a job's webhook on loopback is refused unless the admin allows it
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_CAPACITY": CAPACITY, "MODELYARD_WEBHOOKS": hook,
                                                "MODELYARD_WEBHOOK_ALLOW": "127.0.0.1/32"}).start()
    try:
        with srv.client() as c:
            job = submit(c, [PY, "-c", "raise SystemExit(4)"], webhooks=[hook + "?job=1"])
            wait_state(c, job["id"], "failed")
            wait_for(lambda: len(_Receiver.received) == 2, 30, what="two webhook deliveries")
            for payload in _Receiver.received:
                assert payload["event"] == "job.ended" and payload["state"] == "failed"
                assert payload["job"]["id"] == job["id"] and payload["job"]["exit_code"] == 4
    finally:
        srv.stop()
        receiver.shutdown()


def test_artifacts_on_s3(s3_env: dict[str, str], tmp_path: Path) -> None:
    """The same job with the artifact store on a real S3 API (moto's server)."""
    import boto3

    url = f"s3://{s3_env['BUCKET']}/yard"
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_CAPACITY": CAPACITY, "MODELYARD_STORAGE_URL": url}).start()
    snapshot = tar_gz({"train.py": b"import os\nopen(os.path.join(os.environ['MODELYARD_OUTPUT_DIR'], 'w.bin'), 'wb')"
                                    b".write(b'abc')\nprint('ok')\n"})
    try:
        with srv.client() as c:
            key = c.post("/snapshots", content=snapshot).json()["key"]
            job = c.post("/jobs", json={"spec": {"command": [PY, "train.py"]}, "snapshot": key}).json()
            wait_state(c, job["id"], "succeeded")
            assert c.get(f"/jobs/{job['id']}/outputs/w.bin").content == b"abc"
        s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1")

        def keys() -> set[str]:
            return {o["Key"] for o in s3.list_objects_v2(Bucket=s3_env["BUCKET"])["Contents"]}

        assert f"yard/{key}" in keys()
        assert f"yard/jobs/{job['id']}/attempts/1/outputs/w.bin" in keys()
        # the log, once the attempt ended, kept once in the store: the archive, not the supervisor's log.txt
        base = f"yard/jobs/{job['id']}/attempts/1"
        wait_for(lambda: f"{base}/log.txt" not in (k := keys()) and f"{base}/log.idx" in k, 30,
                 what="the log's archive in S3 to replace log.txt")
        assert f"{base}/log.jsonl" in keys()
        with srv.client() as c:
            assert [x["text"] for x in c.get(f"/jobs/{job['id']}/logs").json()["lines"]] == ["ok"]
    finally:
        srv.stop()
