"""The CLI and the client end to end against a real server subprocess (one per module).

Jobs really run (local executor, supervisor subprocesses); every wait is a
predicate or the server's own stream, never a sleep.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProc, cli, start_server
from test_e2e_jobs import tar_gz

from modelyard.client import Client, ClientError

PY = sys.executable
JOB_KEYS = {"id", "name", "state", "exit_code", "attempts", "resources", "command", "owner"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("server") / "home") as proc:
        yield proc


@pytest.fixture
def client(server: ServerProc) -> Iterator[Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "code"
    wd.mkdir()
    (wd / "data.txt").write_text("from the snapshot\n")
    (wd / "secret.txt").write_text("ignored\n")
    (wd / ".gitignore").write_text("secret.txt\n")
    return wd


def submit(server: ServerProc, workdir: Path, *args: str) -> dict:
    done = cli(["submit", "--json", *args], server.env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_submit_argv_list_runs_and_json_has_the_job_fields(server: ServerProc, workdir: Path, client: Client) -> None:
    job = submit(server, workdir, "--name", "argv", "--", PY, "-c", "print('hello argv')")
    assert JOB_KEYS <= job.keys()
    assert job["command"] == [PY, "-c", "print('hello argv')"]
    assert job["name"] == "argv" and job["resources"]["cpus"] == 1.0
    final = client.wait_job(job["id"], timeout=60)
    assert final["state"] == "succeeded" and final["exit_code"] == 0
    assert [a["exit_code"] for a in final["attempts"]] == [0]


def test_a_single_argument_is_a_shell_string_and_wait_exits_with_its_code(server: ServerProc, workdir: Path) -> None:
    job = submit(server, workdir, "--", "cat data.txt; ls; exit 3")
    assert job["command"] == "cat data.txt; ls; exit 3"
    waited = cli(["wait", str(job["id"]), "--timeout", "60s"], server.env)
    assert waited.returncode == 3, waited.stderr
    logs = cli(["logs", str(job["id"])], server.env)
    assert logs.returncode == 0
    assert "from the snapshot" in logs.stdout
    assert "secret.txt" not in logs.stdout  # .gitignore'd, not in the snapshot


def test_job_file_with_flags_overriding(server: ServerProc, workdir: Path) -> None:
    (workdir / "job.yaml").write_text(
        f"command: [{PY}, -c, 'import os; print(os.environ[\"A\"], os.environ[\"B\"])']\n"
        "name: from-file\ncpus: 0.5\nenv: {A: file, B: file}\nretries: 0\n"
    )
    job = submit(server, workdir, "-f", "job.yaml", "--name", "from-flag", "--env", "B=flag")
    assert job["name"] == "from-flag"
    assert job["resources"]["cpus"] == 0.5
    assert job["env"] == {"A": "file", "B": "flag"}
    assert cli(["wait", str(job["id"])], server.env).returncode == 0
    logs = cli(["logs", str(job["id"]), "--json"], server.env)
    data = json.loads(logs.stdout)
    assert data["attempt"] == 1
    assert [line["text"] for line in data["lines"]] == ["file flag"]
    assert {"n", "t", "stream", "text"} <= data["lines"][0].keys()


def test_submit_follow_prints_the_log_and_exits_with_the_job_code(server: ServerProc, workdir: Path) -> None:
    done = cli(["submit", "--", PY, "-c", "import sys; print('one'); print('two'); sys.exit(5)"], server.env, cwd=workdir)
    assert done.returncode == 0
    job_id = done.stdout.strip()
    followed = cli(["logs", "-f", job_id], server.env)
    assert followed.stdout.splitlines() == ["one", "two"]
    done = cli(["submit", "--follow", "--", PY, "-c", "import sys; print('three'); sys.exit(5)"], server.env, cwd=workdir)
    assert done.returncode == 5, done.stderr
    assert done.stdout.splitlines()[-1] == "three"
    done = cli(["submit", "--follow", "--json", "--", PY, "-c", "print('four')"], server.env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "succeeded"  # the log went to stderr
    assert "four" in done.stderr


def test_metrics_json_is_the_api_object(server: ServerProc, workdir: Path, client: Client) -> None:
    code = "import modelyard as m\nfor i in range(3): m.log_metric('loss', 1.0 / (i + 1), step=i)\nm.log_metric('acc', 0.9, epoch=1)"
    (workdir / "train.py").write_text(code)
    job = submit(server, workdir, "--", PY, "train.py")
    assert client.wait_job(job["id"], timeout=60)["state"] == "succeeded"
    done = cli(["metrics", str(job["id"]), "--json"], server.env)
    metrics = json.loads(done.stdout)
    assert set(metrics) == {"loss", "acc"}
    assert [p["value"] for p in metrics["loss"]] == [1.0, 0.5, 1.0 / 3]
    assert [p["step"] for p in metrics["loss"]] == [0, 1, 2]
    assert metrics["acc"][0]["epoch"] == 1 and metrics["acc"][0]["step"] is None
    assert all(set(p) == {"value", "step", "epoch", "time"} for p in metrics["loss"])
    table = cli(["metrics", str(job["id"])], server.env)
    assert "loss" in table.stdout and "acc" in table.stdout
    columns = client.metrics(job["id"], names=["loss", "acc"], columns=True)
    assert columns["loss"]["step"] == [0, 1, 2] and columns["loss"]["value"] == [1.0, 0.5, 1.0 / 3]
    assert columns["acc"]["epoch"] == [1] and columns["acc"]["step"] == [None]


def test_jobs_show_stop_restart_clone(server: ServerProc, workdir: Path, client: Client) -> None:
    job = submit(server, workdir, "--name", "sleeper", "--", PY, "-c", "import time; print('up', flush=True); time.sleep(600)")
    listed = json.loads(cli(["jobs", "--json"], server.env).stdout)
    assert job["id"] in [j["id"] for j in listed["jobs"]]
    stopped = cli(["stop", str(job["id"]), "--json"], server.env)
    assert stopped.returncode == 0, stopped.stderr
    final = client.wait_job(job["id"], timeout=60)
    assert final["state"] == "stopped"
    assert cli(["wait", str(job["id"])], server.env).returncode not in (0, 124)
    restarted = json.loads(cli(["restart", str(job["id"]), "--json"], server.env).stdout)
    assert restarted["id"] == job["id"]
    client.stop_job(job["id"])
    shown = json.loads(cli(["show", str(job["id"]), "--json"], server.env).stdout)
    assert len(shown["attempts"]) == 2 and shown["events"]
    clone = cli(["clone", str(job["id"]), "--json", "--name", "cloned", "--", PY, "-c", "print('clone')"], server.env)
    cloned = json.loads(clone.stdout)
    assert cloned["id"] != job["id"] and cloned["name"] == "cloned"
    assert cloned["command"] == [PY, "-c", "print('clone')"]
    assert client.wait_job(cloned["id"], timeout=60)["state"] == "succeeded"
    human = cli(["show", str(job["id"])], server.env)
    assert "sleeper" in human.stdout and "attempts" in human.stdout


def test_download_fetches_every_output_file(server: ServerProc, workdir: Path, client: Client, tmp_path: Path) -> None:
    code = ("import os, pathlib\nout = pathlib.Path(os.environ['MODELYARD_OUTPUT_DIR'])\n"
            "(out / 'ckpt').mkdir()\n(out / 'ckpt' / 'epoch-1.pt').write_bytes(b'x' * 300000)\n(out / 'model.txt').write_text('final')\n")
    (workdir / "train.py").write_text(code)
    job = submit(server, workdir, "--", PY, "train.py")
    assert client.wait_job(job["id"], timeout=60)["state"] == "succeeded"
    dest = tmp_path / "dl"
    done = cli(["download", str(job["id"]), "--to", str(dest)], server.env)
    assert done.returncode == 0, done.stderr
    assert (dest / "model.txt").read_text() == "final"
    assert (dest / "ckpt" / "epoch-1.pt").stat().st_size == 300000


def test_unknown_job_is_one_error_line(server: ServerProc) -> None:
    done = cli(["show", "999999"], server.env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "not found" in done.stderr
    assert done.stderr.count("\n") == 1


def test_bad_token_is_refused(server: ServerProc) -> None:
    done = cli(["jobs"], {**server.env, "MODELYARD_TOKEN": "wrong"})
    assert done.returncode == 1 and done.stderr.startswith("error: ")


def test_user_create_prints_a_working_token(server: ServerProc) -> None:
    done = cli(["user", "create", "bob", "--no-isolation"], server.env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    with Client(server.url, token) as bob:
        assert bob.me()["name"] == "bob"
        with pytest.raises(ClientError) as e:
            bob.create_user("eve")
        assert e.value.status == 403
    again = cli(["user", "create", "carol", "--admin", "--json"], server.env)
    assert json.loads(again.stdout)["user"]["is_admin"] is True


def test_client_streams_a_log_to_its_end(server: ServerProc, client: Client, workdir: Path) -> None:
    job = submit(server, workdir, "--", PY, "-c", "for i in range(5): print(i)")
    events = list(client.stream_logs(job["id"]))
    assert [e.data["text"] for e in events if e.event == "line"] == ["0", "1", "2", "3", "4"]
    assert events[-1].event == "end" and events[-1].data["state"] == "succeeded"


def test_client_wait_returns_the_live_job_at_its_timeout(server: ServerProc, client: Client, workdir: Path) -> None:
    job = submit(server, workdir, "--", PY, "-c", "import time; time.sleep(600)")
    assert not client.wait_job(job["id"], timeout=0.5)["state"] in ("succeeded", "failed")
    waited = cli(["wait", str(job["id"]), "--timeout", "1s"], server.env)
    assert waited.returncode == 124 and "still" in waited.stderr
    client.stop_job(job["id"])
    assert client.wait_job(job["id"], timeout=60)["state"] == "stopped"


def test_client_upload_and_errors(client: Client, tmp_path: Path) -> None:
    assert client.health()["status"] == "ok"
    seen: list[tuple[int, int | None]] = []
    snapshot = tar_gz({"train.py": b"print('hi')\n"})
    up = client.upload_snapshot(iter([snapshot[:10], snapshot[10:]]), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == len(snapshot)
    assert up["key"].startswith("snapshots/")
    with pytest.raises(ClientError) as bad:  # the server reads the tar's headers before keeping it
        client.upload_snapshot(iter([b"not really a tarball"]))
    assert bad.value.status == 422 and bad.value.field == "snapshot"
    with pytest.raises(ClientError) as e:
        client.submit_job({"command": ["x"], "resources": {"gpus": -1}})
    assert e.value.status == 422 and e.value.field and "gpus" in e.value.field


def test_node_flags_reach_the_job_and_nodes_lists_the_local_node(server: ServerProc, workdir: Path,
                                                                 client: Client) -> None:
    job = submit(server, workdir, "--nodes", "1", "--nproc-per-node", "2", "--", PY, "-c", "print('ok')")
    assert (job["nodes"], job["nproc_per_node"], job["node_labels"]) == (1, 2, {})
    shown = cli(["show", str(job["id"])], server.env)
    assert "2 per node" in shown.stdout, shown.stdout
    client.wait_job(job["id"], timeout=60)
    listed = cli(["nodes"], server.env)
    assert listed.returncode == 0 and "local" in listed.stdout, listed.stderr
    [node] = json.loads(cli(["nodes", "--json"], server.env).stdout)
    assert node["id"] == "local" and node["total"]["cpus"] > 0


@pytest.mark.parametrize(("args", "words"), [
    (["--nodes", "2"], "error: nodes: asks for 2 nodes but the local executor has one node"),
    (["--node-label", "gpu=h100"], "error: node_labels: no node has label gpu=h100"),
    (["--node-label", "gpu"], "error: node_labels: label 'gpu' must be KEY=VALUE"),
])
def test_node_flags_that_cannot_be_met_are_one_error_line(server: ServerProc, workdir: Path, args: list[str],
                                                          words: str) -> None:
    done = cli(["submit", *args, "--", "true"], server.env, cwd=workdir)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(words), done.stderr  # after the upload's progress
