"""``--param`` and ``--tag`` end to end: a real job and a ``run --local`` print their parameters as
``{NAME}`` in the command and as MODELYARD_PARAMS; ``jobs`` filters and shows them; ``tag`` edits
tags; ``clone`` carries both. One real server for the module."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProc, clean_env, cli, start_server

from modelyard.jobs.params import command_argv, params_env, substitute

PY = sys.executable
# prints what the command line said, and what the variable holds
PRINT_BOTH = "import os, sys; print('argv', sys.argv[1:]); print('env', os.environ['MODELYARD_PARAMS'])"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("params") / "home") as proc:
        yield proc


def run_cli(server: ServerProc, *args: str, cwd: Path | None = None, code: int = 0) -> str:
    done = cli(list(args), server.env, cwd=cwd)
    assert done.returncode == code, done.stderr
    return done.stdout


def test_substitution_leaves_what_is_not_a_parameter() -> None:
    params = {"lr": 0.01, "warm": True, "opt": "adam", "n": 3, "a.b": 1e-05}
    assert substitute("--lr {lr} --warm {warm} {opt} {n} {a.b}", params) == "--lr 0.01 --warm true adam 3 1e-05"
    assert substitute("{{lr}} {{nope}} {nope} ${HOME} {} {\"k\": {\"v\": 1}} f'{x!r}'", params) == \
        "{lr} {{nope}} {nope} ${HOME} {} {\"k\": {\"v\": 1}} f'{x!r}'"
    assert command_argv(["/bin/sh", "-c", "echo {lr}"], params) == ["/bin/sh", "-c", "echo 0.01"]
    assert json.loads(params_env(params)["MODELYARD_PARAMS"]) == params
    assert params_env({}) == {"MODELYARD_PARAMS": "{}"}


def test_a_real_job_gets_its_params_in_the_command_and_the_environment(server: ServerProc, tmp_path: Path) -> None:
    out = run_cli(server, "submit", "--json", "--param", "lr=0.01", "--param", "opt=adam", "--param", "warm=true",
                  "--tag", "baseline", "--", PY, "-c", PRINT_BOTH, "--lr", "{lr}", "--opt={opt}", "{{lr}}", "{x}",
                  cwd=tmp_path)
    job = json.loads(out)
    assert job["params"] == {"lr": 0.01, "opt": "adam", "warm": True} and job["tags"] == ["baseline"]
    run_cli(server, "wait", str(job["id"]), "--timeout", "60s")
    logs = run_cli(server, "logs", str(job["id"]))
    assert "argv ['--lr', '0.01', '--opt=adam', '{lr}', '{x}']" in logs
    assert 'env {"lr":0.01,"opt":"adam","warm":true}' in logs
    # a shell string: the same substitution, the shell's own braces untouched
    job = json.loads(run_cli(server, "submit", "--json", "--param", "lr=0.5", "--",
                             'echo "lr={lr} home=${HOME:+set} $MODELYARD_PARAMS"', cwd=tmp_path))
    run_cli(server, "wait", str(job["id"]), "--timeout", "60s")
    assert 'lr=0.5 home=set {"lr":0.5}' in run_cli(server, "logs", str(job["id"]))


def test_jobs_filters_shows_params_and_tags_edit(server: ServerProc, tmp_path: Path) -> None:
    with server.client() as c:  # through the client: the CLI's own submit is tested above
        ids = [c.submit_job({"command": ["true"], "params": {"lr": lr, "bs": 32}, "tags": ["sweep7"]})["id"]
               for lr in (0.1, 0.001, 0.03)]
    listed = json.loads(run_cli(server, "jobs", "--json", "--tag", "sweep7", "--filter", "lr>=0.01",
                                "--sort", "param:lr"))
    assert [j["id"] for j in listed["jobs"]] == [ids[2], ids[0]]
    table = run_cli(server, "jobs", "--tag", "sweep7", "--param", "lr", "--param", "bs", "--filter", "lr<0.05")
    header, *rows = [line.split() for line in table.strip().splitlines()]
    assert header[:4] == ["id", "name", "lr", "bs"] and header[-1] == "tags"
    assert [(r[0], r[2], r[3], r[-1]) for r in rows] == [(str(ids[2]), "0.03", "32", "sweep7"),
                                                         (str(ids[1]), "0.001", "32", "sweep7")]
    assert f"job {ids[0]}: keep sweep7" in run_cli(server, "tag", str(ids[0]), "add", "keep")
    assert f"job {ids[0]}: keep" in run_cli(server, "tag", str(ids[0]), "rm", "sweep7")
    with server.client() as c:
        assert [j["id"] for j in c.list_jobs(tags=["sweep7"])["jobs"]] == ids[:0:-1]
    shown = run_cli(server, "show", str(ids[0]))
    assert "lr=0.1 bs=32" in shown and "keep" in shown
    clone = json.loads(run_cli(server, "clone", str(ids[0]), "--param", "lr=0.2", "--tag", "round2", "--json"))
    assert clone["params"] == {"lr": 0.2, "bs": 32} and clone["tags"] == ["keep", "round2"]
    # bad input: one line naming what is wrong, no traceback
    done = cli(["jobs", "--filter", "lr>>1"], server.env)
    assert done.returncode != 0 and "lr>>1" in done.stderr and "param" in done.stderr
    done = cli(["tag", str(ids[0]), "add", "bad tag"], server.env)
    assert done.returncode != 0 and "bad tag" in done.stderr
    # a job file's params, a flag over one of them
    (tmp_path / "job.yaml").write_text("params: {lr: 0.1, layers: 4}\ntags: [from-file]\ncommand: [\"true\"]\n")
    job = json.loads(run_cli(server, "submit", "--json", "-f", str(tmp_path / "job.yaml"), "--param", "lr=0.2",
                             "--tag", "flag", cwd=tmp_path))
    assert job["params"] == {"lr": 0.2, "layers": 4} and job["tags"] == ["flag", "from-file"]
    done = cli(["submit", "--param", "lr", "--", "true"], server.env, cwd=tmp_path)
    assert done.returncode != 0 and "params" in done.stderr and "NAME=VALUE" in done.stderr


def test_run_local_gets_the_same_command_and_variable(tmp_path: Path) -> None:
    wd = tmp_path / "code"
    wd.mkdir()
    done = cli(["run", "--local", "--param", "lr=0.01", "--param", "opt=adam", "--", PY, "-c", PRINT_BOTH,
                "--lr", "{lr}", "{opt}"], clean_env(tmp_path / "home"), cwd=wd)
    assert done.returncode == 0, done.stderr
    assert "argv ['--lr', '0.01', 'adam']" in done.stdout
    assert 'env {"lr":0.01,"opt":"adam"}' in done.stdout
