"""The Python SDK (modelyard/sdk.py) end to end against a real server subprocess (one per module).

Jobs really run (local executor, supervisors); every wait is the SDK's own wait or a log line
followed live, never a sleep.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from serverproc import ServerProc, start_server

import modelyard
from modelyard.client import Client, ClientError
from modelyard.errors import ModelyardError
from modelyard.jobs.states import JobState
from modelyard.sdk import Job, JobTimeout

PY = sys.executable
TRAIN = """\
import json, os, pathlib, sys
params = json.loads(os.environ["MODELYARD_PARAMS"])
print("lr is", sys.argv[2], params["lr"], flush=True)
print("ignored file here:", os.path.exists("ignored.txt"), flush=True)
print("env", os.environ.get("MODE"), "secret given:", os.environ.get("API_KEY") == "s3cret-value", flush=True)
for step in range(3):
    print(json.dumps({"metric": "loss", "value": 1.0 / (step + 1), "step": step, "epoch": 0}), flush=True)
print(json.dumps({"metric": "acc", "value": 0.5}), flush=True)
print("to stderr", file=sys.stderr, flush=True)
out = pathlib.Path(os.environ["MODELYARD_OUTPUT_DIR"])
(out / "notes.txt").write_text("hello")
(out / "final").mkdir()
(out / "final" / "model.txt").write_text("weights")
"""


NOTE = "[modelyard] "  # how the supervisor's own lines in a job's log begin


def first_own_line(lines: Iterator[str]) -> str:
    """The first line the job's command printed, past any note of the supervisor's."""
    return next(line for line in lines if not line.startswith(NOTE))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("sdk") / "home") as proc:
        yield proc


@pytest.fixture(scope="module", autouse=True)
def client(server: ServerProc) -> Iterator[Client]:
    """The SDK's default client, as a notebook would make it; the environment names the same server,
    so that no call here can fall back to an embedded server in the tester's home."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELYARD_URL", server.url)
        mp.setenv("MODELYARD_TOKEN", server.token)
        c = modelyard.connect(server.url, server.token)
        yield c
        c.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("code")
    (wd / "train.py").write_text(TRAIN)
    (wd / "ignored.txt").write_text("not sent\n")
    (wd / ".gitignore").write_text("ignored.txt\n")
    return wd


@pytest.fixture(scope="module")
def trained(client: Client, workdir: Path) -> Job:
    """The tiny training job, submitted from its folder with params and tags, and ended."""
    job = modelyard.submit([PY, "train.py", "--lr", "{lr}"], workdir, name="sdk-train", params={"lr": 0.01},
                           tags=["sdk", "baseline"], cpus=0.5, env={"MODE": "sdk"}, secrets={"API_KEY": "s3cret-value"})
    assert (job.name, job.params, job.tags) == ("sdk-train", {"lr": 0.01}, ["baseline", "sdk"])
    assert repr(job).startswith(f"<Job {job.id} 'sdk-train' ")
    assert job.wait(timeout=60) is JobState.SUCCEEDED
    return job


def test_submit_wait_and_logs(trained: Job) -> None:
    assert trained.state is JobState.SUCCEEDED and trained.data["resources"]["cpus"] == 0.5
    lines = list(trained.logs())
    assert "lr is 0.01 0.01" in lines  # {lr} filled in from params, and MODELYARD_PARAMS
    assert "ignored file here: False" in lines  # .gitignore'd: not in the snapshot
    assert "to stderr" in lines and "env sdk secret given: True" in lines
    assert trained.data["secrets"] == {"API_KEY": "***"}  # sent, never shown back
    assert list(trained.logs(follow=True)) == lines  # an ended job: follow stops at the end


def test_metrics_as_a_dataframe(trained: Job) -> None:
    df = trained.metrics()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["name", "step", "epoch", "value", "time"]
    loss = df[df["name"] == "loss"]
    assert loss["value"].tolist() == [1.0, 0.5, 1 / 3] and loss["step"].tolist() == [0, 1, 2]
    assert loss["epoch"].tolist() == [0, 0, 0]
    acc = df[df["name"] == "acc"]
    assert acc["value"].tolist() == [0.5] and acc["step"].isna().all()
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    assert df["time"].min() > pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1)
    assert set(trained.metrics(names="loss")["name"]) == {"loss"}


def test_metrics_without_pandas_are_a_dict_of_lists(trained: Job, server: ServerProc) -> None:
    code = ("import json, sys\n"
            "sys.modules['pandas'] = None  # import pandas now fails, as where it is not installed\n"
            "import modelyard\n"
            f"print(json.dumps(modelyard.job({trained.id}).metrics()))\n")
    done = subprocess.run([PY, "-c", code], env=server.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert set(table) == {"name", "step", "epoch", "value", "time"}
    assert table["name"] == ["acc", "loss", "loss", "loss"]
    assert table["value"] == [0.5, 1.0, 0.5, 1 / 3] and table["step"] == [None, 0, 1, 2]
    assert all(isinstance(t, float) for t in table["time"])


def test_outputs_and_download(trained: Job, tmp_path: Path) -> None:
    files = {f["path"]: f for f in trained.outputs()}
    assert {"notes.txt", "final/model.txt"} <= files.keys()
    assert files["final/model.txt"]["final"] is True and files["notes.txt"]["size"] == 5
    folder = trained.download(tmp_path / "all")
    assert folder == tmp_path / "all"
    assert (folder / "notes.txt").read_text() == "hello"
    assert (folder / "final" / "model.txt").read_text() == "weights"
    model = trained.download(tmp_path / "model", final=True)
    assert [p.name for p in model.iterdir()] == ["model.txt"]


def test_jobs_by_tag_state_and_param(trained: Job, workdir: Path) -> None:
    assert modelyard.jobs(tag="baseline") == [trained]
    assert trained in modelyard.jobs(tag=["sdk", "baseline"], state="succeeded")
    assert trained in modelyard.jobs(param={"lr": 0.01}, since=date(2000, 1, 1))
    assert trained not in modelyard.jobs(param="lr>0.1")
    assert trained not in modelyard.jobs(state=[JobState.FAILED, JobState.STOPPED])
    with pytest.raises(ClientError, match="unknown state 'bogus'") as e:
        modelyard.jobs(state="bogus")
    assert e.value.status == 422 and e.value.field == "state"


def test_tags_change_and_a_job_is_found_by_id(trained: Job) -> None:
    assert "best" in trained.tag("best")
    assert modelyard.job(trained.id).tags == ["baseline", "best", "sdk"]
    assert trained.tag(remove="best") == ["baseline", "sdk"] == trained.tags


def test_stop_a_long_job_and_restart_it(client: Client, workdir: Path) -> None:
    job = modelyard.submit(f"{PY} -c \"import time; print('started', flush=True); time.sleep(600)\"", workdir,
                           client=client, max_runtime="5m")
    lines = job.logs(follow=True)
    assert first_own_line(lines) == "started"
    assert job.state is JobState.RUNNING, job.data
    with pytest.raises(JobTimeout, match=rf"job {job.id} is still running after 0.2s") as e:
        job.wait(timeout=0.2)
    assert isinstance(e.value, TimeoutError) and e.value.state is JobState.RUNNING
    with pytest.raises(TimeoutError):
        job.wait(timeout=0.2, poll=0.05)
    assert job.stop() is job
    assert job.wait(timeout=30) is JobState.STOPPED
    rest = list(lines)  # the stream ends with the job
    assert rest and all(line.startswith(NOTE) for line in rest), rest  # the supervisor's notes only
    # The restart waits behind a job holding every core: following it must wait for attempt 2, not
    # replay attempt 1's "started" while the job is still queued.
    every = client.capacity()["total"]["cpus"]
    blocker = modelyard.submit(f"{PY} -c \"import time; print('blocking', flush=True); time.sleep(600)\"", workdir,
                               client=client, cpus=every, max_runtime="5m")
    assert first_own_line(blocker.logs(follow=True)) == "blocking"
    job.restart()
    again = job.logs(follow=True)
    assert job.refresh().state is JobState.QUEUED, job.data
    blocker.stop()
    assert first_own_line(again) == "started" and job.refresh().data["attempt"] == 2, job.data
    job.stop()
    assert job.wait(timeout=30, poll=0.1) is JobState.STOPPED


def test_errors_are_modelyard_errors_naming_what_is_wrong(client: Client, workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="not found") as e:
        modelyard.job(10**9)
    assert e.value.status == 404
    with pytest.raises(ModelyardError, match="is not a folder") as e2:
        modelyard.submit("true", tmp_path / "nowhere")
    assert e2.value.field == "workdir"
    with pytest.raises(ModelyardError) as e3:
        modelyard.submit("true", workdir, gpus=-1)
    assert e3.value.field == "resources.gpus"
    with pytest.raises(ModelyardError, match="is not a job field") as e4:
        modelyard.submit("true", workdir, colour="blue")
    assert e4.value.field == "colour"
    with pytest.raises(ModelyardError, match="is not a command") as e5:
        modelyard.submit(["python", 3], workdir)  # type: ignore[list-item]
    assert e5.value.field == "command"
    with pytest.raises(ModelyardError, match="the command is empty") as e6:
        modelyard.submit([], workdir)
    assert e6.value.field == "command"
    with pytest.raises(ModelyardError, match="is not a job id"):
        modelyard.job("7")  # type: ignore[arg-type]


def test_connect_checks_the_server_and_the_token(server: ServerProc, client: Client) -> None:
    with pytest.raises(ClientError, match="cannot reach") as e:
        modelyard.connect("http://127.0.0.1:9", server.token)
    assert e.value.status is None
    with pytest.raises(ClientError) as e2:
        modelyard.connect(server.url, "my_not-a-token")
    assert e2.value.status == 401
    assert modelyard.sdk.default_client() is client  # a failed connect keeps the last good one


def test_a_closed_connection_gives_way_to_the_environments_server(server: ServerProc, client: Client) -> None:
    mine = modelyard.connect()  # both from the environment
    assert modelyard.sdk.default_client() is mine and mine.url == server.url
    mine.close()
    fallback = modelyard.sdk.default_client()
    assert fallback is not mine and not fallback.closed and fallback.me()["name"]
    modelyard.connect(server.url, server.token)  # the module's later tests: a default again
    fallback.close()


def test_importing_modelyard_stays_light(tmp_path: Path) -> None:
    code = ("import sys, modelyard\n"
            "modelyard.log_metric('loss', 0.5, step=1)\n"
            "print(sorted(m for m in ('httpx', 'typer', 'pydantic', 'rich', 'fsspec', 'modelyard.sdk') if m in sys.modules))\n"
            "import modelyard.jobs.spec\n"
            "print(callable(modelyard.jobs), modelyard.jobs.spec.JobSpec.__name__)\n")
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    metric, loaded, jobs = done.stdout.splitlines()
    assert json.loads(metric) == {"metric": "loss", "value": 0.5, "step": 1}
    assert loaded == "[]"
    assert jobs == "True JobSpec"  # modelyard.jobs: the SDK's search, and still the domain package


def test_a_notebook_debugs_then_submits_the_work_as_a_background_job(server: ServerProc, workdir: Path,
                                                                     client: Client) -> None:
    """README's flow, cell by cell in a real IPython kernel (what runs a notebook's cells): a cell
    submits, a later one waits and reads. Driven by jupyter_client: nbclient's nbformat would spend
    seconds building jsonschema's format grammars first."""
    from jupyter_client.manager import start_new_kernel

    cells = [
        f"import sys, modelyard\nmodelyard.connect({server.url!r}, token={server.token!r})",
        "def loss(step):\n    return 1.0 / (step + 1)\nprint([loss(s) for s in range(3)])",  # debugging here first
        f"job = modelyard.submit([sys.executable, 'train.py', '--lr', '{{lr}}'], workdir={str(workdir)!r},\n"
        "                       params={'lr': 0.1}, tags=['from-notebook'])\njob",
        # metrics() would load pandas in the kernel (seconds); the DataFrame has a test of its own
        "print(job.wait(timeout=60).value)\nprint([line for line in job.logs() if line.startswith('lr is')])",
    ]
    km, kc = start_new_kernel(kernel_name="python3", extra_arguments=["--HistoryManager.enabled=False"])
    try:
        outputs = [run_cell(kc, code) for code in cells]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert outputs[1] == "[1.0, 0.5, 0.3333333333333333]\n"
    assert re.fullmatch(r"<Job \d+ .*train\.py.* (queued|starting|running|succeeded)>", outputs[2]), outputs[2]
    assert outputs[3] == "succeeded\n['lr is 0.1 0.1']\n"
    [found] = modelyard.jobs(tag="from-notebook", client=client)
    assert found.params == {"lr": 0.1} and found.metrics(names="loss")["value"].round(2).tolist() == [1.0, 0.5, 0.33]


def run_cell(kc: Any, code: str) -> str:
    """Execute one cell; what it printed and its value's repr. A cell that raises fails the test."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] == "execute_result":
            out.append(content["data"]["text/plain"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(content["traceback"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=90)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


