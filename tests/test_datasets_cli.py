"""``modelyard dataset`` as a person uses it, against the embedded server of MODELYARD_HOME
(which reads a local SOURCE itself): create, ls, show, download, rm, their help, and errors
as one ``error: field: reason`` line."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProc, clean_env, cli, start_server
from test_datasets import make_images
from typer.testing import CliRunner

from modelyard.cli.main import app

COMMANDS = ("create", "ls", "show", "visibility", "rm", "download")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("dscli") / "home") as proc:
        yield proc


@pytest.fixture
def env(server: ServerProc) -> dict[str, str]:
    return clean_env(server.home, COLUMNS="200")  # no MODELYARD_URL: the embedded server, found through server.json


def test_every_dataset_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for command in COMMANDS:
        done = runner.invoke(app, ["dataset", command, "--help"], env={"COLUMNS": "200"})
        assert done.exit_code == 0 and "Example: modelyard dataset" in done.output, command
    assert "--dataset" in runner.invoke(app, ["submit", "--help"], env={"COLUMNS": "200"}).output


def test_create_ls_show_download_and_remove_an_image_folder(env: dict[str, str], tmp_path: Path) -> None:
    src = make_images(tmp_path / "pets")  # bird 6, cat 10, dog 8
    made = cli(["dataset", "create", "pets", str(src), "--split", "train=0.75,val=0.25", "--format", "lmdb",
                "--description", "three kinds"], env)
    assert made.returncode == 0, made.stderr
    ref = made.stdout.strip()
    assert ref.startswith("pets:") and "created " + ref in made.stderr

    shown = json.loads(cli(["dataset", "show", ref, "--json"], env).stdout)
    assert shown["source"] == str(src.resolve()) and shown["source_kind"] == "images"  # read in place
    assert {s["name"]: s["count"] for s in shown["splits"]} == {"train": 18, "val": 6}
    assert shown["classes"] == ["bird", "cat", "dog"]

    ls = cli(["dataset", "ls"], env)
    assert ls.returncode == 0 and "pets" in ls.stdout and "train 18 · val 6" in ls.stdout
    human = cli(["dataset", "show", "pets"], env)
    assert human.returncode == 0 and ref in human.stdout and "lmdb" in human.stdout
    assert "no jobs have used this version" in human.stdout

    to = tmp_path / "copy"
    got = cli(["dataset", "download", "pets", "--to", str(to), "--json"], env)
    assert got.returncode == 0, got.stderr
    for f in shown["files"]:
        assert hashlib.sha256((to / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert sorted(p.name for p in to.iterdir()) == ["train", "val"]

    gone = cli(["dataset", "rm", "pets"], env)
    assert gone.returncode == 0 and f"removed {ref}" in gone.stderr
    assert json.loads(cli(["dataset", "ls", "--json"], env).stdout) == {"datasets": []}


@pytest.mark.parametrize(("args", "expected"), [
    (["create", "a/b", "."], "error: name: bad dataset name 'a/b'"),
    (["create", "x", "no-such-folder"], "error: source: no-such-folder: no such file or folder"),
    (["create", "x", ".", "--format", "recordio"], "error: format: MXNet RecordIO is not supported"),
    (["rm", "x:zz"], "error: dataset: bad dataset version"),
])
def test_errors_are_one_line_naming_the_field(env: dict[str, str], tmp_path: Path, args: list[str],
                                              expected: str) -> None:
    (tmp_path / "f.txt").write_text("x")
    done = cli(["dataset", *args], env, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip().startswith(expected), done.stderr
    assert done.stderr.strip().count("\n") == 0


LIST_DATA = ("import os; d = os.environ['MODELYARD_DATA_DIR']; splits = sorted(s for s in os.listdir(d) "
             "if os.path.isdir(os.path.join(d, s))); print('data', d); "
             "print('splits', splits, sum(len(fs) for s in splits for _, _, fs in os.walk(os.path.join(d, s))))")


def test_run_local_gets_a_dataset_as_a_job_would(env: dict[str, str], server: ServerProc, tmp_path: Path) -> None:
    made = json.loads(cli(["dataset", "create", "runlocal", str(make_images(tmp_path / "imgs")), "--split",
                           "train=0.5,val=0.5", "--json"], env).stdout)
    wd = tmp_path / "code"
    wd.mkdir()
    # the embedded server's store is on this machine: the shared, verified cache
    here = cli(["run", "--local", "--dataset", "runlocal", "--", "python", "-c", LIST_DATA], env, cwd=wd)
    assert here.returncode == 0, here.stderr
    cache = server.home / "cache" / "datasets" / "runlocal" / made["version"]
    assert f"data {cache}" in here.stdout
    assert f"splits ['train', 'val'] {made['file_count']}" in here.stdout
    # a remote server's: downloaded into the run's own folder
    remote = {**env, "MODELYARD_URL": server.url, "MODELYARD_TOKEN": server.token}
    there = cli(["run", "--local", "--dataset", f"runlocal:{made['version'][:8]}", "--", "python", "-c", LIST_DATA],
                remote, cwd=wd)
    assert there.returncode == 0, there.stderr
    assert f"splits ['train', 'val'] {made['file_count']}" in there.stdout
    data_line = next(line for line in there.stdout.splitlines() if line.startswith("data "))
    assert data_line.endswith("/data") and "/runs/local-" in data_line
    missing = cli(["run", "--local", "--dataset", "no-such-data", "--", "true"], env, cwd=wd)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no-such-data" in missing.stderr


def test_visibility_at_create_and_after_and_ls_shows_the_owner(env: dict[str, str], tmp_path: Path) -> None:
    src = make_images(tmp_path / "shared")
    made = cli(["dataset", "create", "shared", str(src), "--visibility", "public", "--json"], env)
    assert made.returncode == 0, made.stderr
    listed = {d["name"]: d for d in json.loads(cli(["dataset", "ls", "--json"], env).stdout)["datasets"]}
    assert (listed["shared"]["owner"], listed["shared"]["visibility"]) == ("local", "public")
    assert "local" in cli(["dataset", "ls"], env).stdout
    changed = cli(["dataset", "visibility", "shared", "private"], env)
    assert changed.returncode == 0 and "shared is private (owner local)" in changed.stderr, changed.stderr
    shown = json.loads(cli(["dataset", "show", "shared", "--json"], env).stdout)
    assert shown["visibility"] == "private"
    assert [e["action"] for e in shown["history"]] == ["created", "visibility"]
    bad = cli(["dataset", "visibility", "shared", "everyone"], env)
    assert bad.returncode != 0 and "everyone" in bad.stderr
    assert cli(["dataset", "rm", "shared"], env).returncode == 0
