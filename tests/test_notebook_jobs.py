"""Notebooks as jobs (jobs/notebook.py, notebooks/run.py): real notebooks, built with nbformat, run by
papermill as real jobs of a real server, and by ``run --local`` in the foreground. One server for the
module; the two jobs run side by side, as a kernel's start is most of each one's time."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
from serverproc import ServerProc, clean_env, cli, start_server

from conftest import wait_for
from modelyard.cli.options import notebook_args
from modelyard.errors import ModelyardError
from modelyard.jobs.launch import Environment, LaunchSpec
from modelyard.jobs.notebook import launch_argv, notebook_path, output_name
from modelyard.jobs.spec import JobSpec
from modelyard.supervisor.config import runner_file
from modelyard.supervisor.container import RUNNER, Mounts, run_argv

PY = sys.executable


def notebook(*cells: str, params: str = "lr = 0.01\nopt = 'sgd'") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Training"), p, *map(nbformat.v4.new_code_cell, cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


TRAIN = notebook(
    "import json, os, pathlib, time\nprint('lr is', lr, type(lr).__name__, 'opt is', opt, flush=True)\n"
    "print('mlflow run', os.environ.get('MLFLOW_RUN_ID'), bool(os.environ.get('MLFLOW_TRACKING_URI')))",
    # streamed as it runs: this cell waits (bounded) for the test to have seen the line above in the log
    "go = pathlib.Path(os.environ['MODELYARD_OUTPUT_DIR']) / 'go'\n"
    "deadline = time.monotonic() + 60\n"
    "while not go.exists() and time.monotonic() < deadline:\n    time.sleep(0.05)\n"
    "print('went on:', go.exists())",
    "for step in range(3):\n    print(json.dumps({'metric': 'loss', 'value': lr / (step + 1), 'step': step}))\n"
    "print('val acc=0.75')",
    # MLflow calls in a cell log into the job, as from any job's script (README "MLflow")
    "import mlflow\nwith mlflow.start_run():\n    mlflow.log_param('from_cell', 'yes')\n"
    "    mlflow.log_metric('cell_metric', 1.5, step=1)",
    "import sys\nprint('a warning', file=sys.stderr)\nlr * 10",
)
FAILING = notebook("print('before the error')", "def check(x):\n    raise ValueError(f'lr {x} is too high')\ncheck(lr)",
                   "print('never printed')")


def test_which_commands_are_notebooks_and_what_runs_them() -> None:
    assert notebook_path(["train.ipynb"]) == "train.ipynb" and notebook_path("nbs/train.ipynb ") == "nbs/train.ipynb"
    for command in (["python", "train.ipynb"], "papermill a.ipynb b.ipynb", "x.ipynb; rm -rf ~", ["-x.ipynb"],
                    ["train.py"], "$NB.ipynb"):
        assert notebook_path(command) is None, command
    assert JobSpec(command="train.ipynb").argv() == ["train.ipynb"]  # the web form's text: not a shell command
    assert JobSpec(command="echo a.ipynb").argv() == ["/bin/sh", "-c", "echo a.ipynb"]
    assert launch_argv(["nbs/t.ipynb"], ["py", "run.py"]) == ["py", "run.py", "nbs/t.ipynb"]
    assert launch_argv(["python", "t.py"], ["py", "run.py"]) == ["python", "t.py"]
    assert output_name(["nbs/t.ipynb"]) == "t.ipynb" and output_name(["t.py"]) is None
    # the CLI's papermill-style -p NAME VALUE after the notebook, beside --param NAME=VALUE before it
    assert notebook_args(["t.ipynb", "-p", "lr", "0.1", "--parameters", "n", "a b"], ["x=1"]) == (
        ["t.ipynb"], ["x=1", "lr=0.1", "n=a b"])
    assert notebook_args(["python", "t.py", "-p", "1"], None) == (["python", "t.py", "-p", "1"], None)
    for rest, words in ((["-p", "lr"], "give only parameters as -p NAME VALUE (options go before it)"),
                        (["--gpus", "1"], "not '--gpus 1'"), (["-p", "a=b", "1"], "parameter name 'a=b'")):
        with pytest.raises(ModelyardError, match=re.escape(words)):
            notebook_args(["t.ipynb", *rest], None)


def test_an_image_runs_the_runner_by_file_under_its_own_python(tmp_path: Path) -> None:
    spec = LaunchSpec(job_id="7", argv=["nbs/t.ipynb"], run_dir=tmp_path, environment=Environment(image="img:1"))
    mounts = Mounts(code=tmp_path / "code", output=tmp_path / "output", runner=Path(runner_file()))
    argv = run_argv("podman", spec, name="n", mounts=mounts, env_names=[])
    assert argv[-5:] == ["--", "img:1", "python", RUNNER, "nbs/t.ipynb"]
    assert f"{runner_file()}:{RUNNER}:ro" in argv
    # as a script, outside its package (a venv or an image has no modelyard): it starts and says what is wrong
    (tmp_path / "broken.ipynb").write_text('{"cells": 3')
    for name, words in (("missing.ipynb", "notebook missing.ipynb not found"),
                        ("broken.ipynb", "broken.ipynb is not a notebook nbformat can read: NotJSONError")):
        done = subprocess.run([PY, "-I", runner_file(), name], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("notebooks") / "home") as proc:
        yield proc


def submit(server: ServerProc, folder: Path, nb: nbformat.NotebookNode, *args: str) -> dict:
    folder.mkdir()
    nbformat.write(nb, str(folder / "train.ipynb"))
    done = cli(["submit", "--json", *args], server.env, cwd=folder)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sign_in(web: httpx.Client, token: str) -> None:
    form = web.get("/ui/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert web.post("/ui/login", data={"token": token, "next": "/ui/jobs", "csrf": csrf}).status_code == 303


def test_notebook_jobs_from_submit_to_the_rendered_page(server: ServerProc, tmp_path: Path) -> None:
    job = submit(server, tmp_path / "ok", TRAIN, "--param", "opt=adam", "--metric-pattern", r"acc=(?P<acc>[\d.]+)",
                 "train.ipynb", "-p", "lr", "0.1")
    failing = submit(server, tmp_path / "bad", FAILING, "--name", "bad", "train.ipynb", "-p", "lr", "3")
    assert job["command"] == ["train.ipynb"] and job["params"] == {"lr": 0.1, "opt": "adam"}  # as written

    with server.client() as c:
        def log() -> str:
            return "\n".join(line["text"] for line in c.job_logs(job["id"], limit=1000)["lines"])

        # the first cell's line is in the log while the second cell still waits: output streams as it runs
        wait_for(lambda: "lr is 0.1 float opt is adam" in log(), timeout=90, what="the first cell's output")
        assert c.get_job(job["id"])["state"] == "running" and "went on" not in log()
        runs = sorted((server.home / "runs").glob(f"{job['id']}-*"))
        (runs[0] / "output" / "go").touch()
        for j, state in ((job, "succeeded"), (failing, "failed")):
            wait_for(lambda j=j: c.get_job(j["id"])["state"] in ("succeeded", "failed", "lost"), timeout=90,
                     what=f"job {j['id']} to end")
            assert c.get_job(j["id"])["state"] == state, log()
        text = log()
        assert "went on: True" in text and "a warning" in text
        assert f"mlflow run {job['id']} True" in text  # the kernel has the job's MLflow variables
        assert "0.1 float" in text  # the injected value is a number, as --param keeps it
        metrics = wait_for(lambda: (m := c.metrics(job["id"])) and "loss" in m and m, timeout=30, what="metrics")
        assert [(p["step"], p["value"]) for p in metrics["loss"]] == [(0, 0.1), (1, 0.05), (2, pytest.approx(0.1 / 3))]
        assert [p["value"] for p in metrics["acc"]] == [0.75]  # --metric-pattern reads cells' lines too
        assert [(p["step"], p["value"]) for p in metrics["cell_metric"]] == [(1, 1.5)]
        assert c.get_job(job["id"])["params"] == {"lr": 0.1, "opt": "adam", "from_cell": "yes"}

        files = {f["path"] for f in c.list_outputs(job["id"])["files"]}
        assert "train.ipynb" in files
        executed = nbformat.reads(c._http.get(f"/jobs/{job['id']}/outputs/train.ipynb").text, as_version=4)
        injected = [cell for cell in executed.cells if "injected-parameters" in cell.metadata.get("tags", [])]
        assert len(injected) == 1 and "lr = 0.1" in injected[0].source and 'opt = "adam"' in injected[0].source
        assert executed.cells[-1].outputs[-1]["data"]["text/plain"] == "1.0"  # lr * 10: it ran to the end

        bad = c.get_job(failing["id"])
        assert bad["state"] == "failed"
        message = bad["attempts"][-1]["message"]
        assert "cell 4 raised:" in message and "ValueError: lr 3 is too high" in message, message
        assert "\x1b[" not in message and "never printed" not in log()
        # the failed run's notebook is kept, up to the cell that raised
        failed_nb = nbformat.reads(c._http.get(f"/jobs/{failing['id']}/outputs/train.ipynb").text, as_version=4)
        ran = {cell.source.split("\n")[0]: cell.get("outputs") for cell in failed_nb.cells}
        assert [o["text"] for o in ran["print('before the error')"]] == ["before the error\n"]
        assert [o.get("ename") for o in ran["def check(x):"]] == ["ValueError"]
        assert ran["print('never printed')"] == []

    with httpx.Client(base_url=server.url, timeout=30) as web:
        sign_in(web, server.token)
        page = web.get(f"/ui/jobs/{job['id']}")
        assert page.status_code == 200 and f'src="/ui/jobs/{job["id"]}/notebook"' in page.text
        rendered = web.get(f"/ui/jobs/{job['id']}/notebook")
        assert rendered.status_code == 200 and "lr is 0.1 float" in rendered.text and "<h1" in rendered.text


def test_run_local_runs_a_notebook_in_the_foreground(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "nbs").mkdir(parents=True)
    nbformat.write(notebook("import os\nprint('lr is', lr, 'here:', os.path.basename(os.getcwd()))\n"
                            "print(json_line)", params="lr = 0.01\njson_line = ''"), str(code / "nbs" / "t.ipynb"))
    line = '{"metric": "loss", "value": 0.5}'
    env = clean_env(tmp_path / "home")
    done = cli(["run", "--local", "nbs/t.ipynb", "-p", "lr", "0.5", "-p", "json_line", line], env, cwd=code)
    assert done.returncode == 0, done.stderr
    assert "lr is 0.5 here: nbs" in done.stdout and line in done.stdout.splitlines()  # in the notebook's folder
    outputs = list((tmp_path / "home" / "runs").glob("local-*/output/t.ipynb"))
    assert len(outputs) == 1 and "lr = 0.5" in outputs[0].read_text()
