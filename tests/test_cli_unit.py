"""CLI pieces that need no server: flag parsing, command shaping, errors, help texts, tables."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import typer
from serverproc import cli, clean_env
from typer.main import get_command
from typer.testing import CliRunner

from modelyard.cli.follow import job_exit_code
from modelyard.cli.main import app
from modelyard.downloads import inside as _inside
from modelyard.cli.options import build_spec, load_job_file, parse_env, shape_command, spec_payload
from modelyard.cli.output import jobs_table, metrics_table
from modelyard.errors import ModelyardError


def test_parse_env_splits_on_the_first_equals() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    assert parse_env(None) == {}


@pytest.mark.parametrize("bad", ["NOEQUALS", "=value"])
def test_parse_env_refuses_a_pair_without_key(bad: str) -> None:
    with pytest.raises(ModelyardError) as e:
        parse_env([bad])
    assert e.value.field == "env"


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["python", "train.py", "--epochs", "3"], ["python", "train.py", "--epochs", "3"]),
        (["python train.py --epochs 3"], "python train.py --epochs 3"),
        (["train"], ["train"]),
        ([], None),
        (None, None),
    ],
)
def test_shape_command(args: list[str] | None, command: list[str] | str | None) -> None:
    assert shape_command(args) == command


def test_yaml_file_with_flags_overriding(tmp_path: Path) -> None:
    job = tmp_path / "conf" / "job.yaml"
    job.parent.mkdir()
    job.write_text("command: python train.py\nname: from-file\ngpus: 2\ncpus: 4\nworkdir: ..\nenv: {A: '1'}\n")
    spec = build_spec(load_job_file(job), {"name": "from-flag", "gpus": 1, "env": {"B": "2"}, "cpus": None})
    assert spec.name == "from-flag"
    assert spec.resources.gpus == 1 and spec.resources.cpus == 4
    assert spec.env == {"A": "1", "B": "2"}
    assert spec.command == "python train.py"
    assert Path(spec.workdir).resolve() == tmp_path  # relative to the file's folder
    assert "workdir" not in spec_payload(spec)


@pytest.mark.parametrize("text", ["- a\n- b\n", "command: [unclosed\n"])
def test_a_job_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(text)
    with pytest.raises(ModelyardError) as e:
        load_job_file(job)
    assert e.value.field == "file"


@pytest.mark.parametrize(
    ("file_data", "overrides", "field"),
    [
        (None, {"command": ["x"], "gpus": -1}, "resources.gpus"),
        (None, {"command": ["x"], "memory": "lots"}, "resources.memory"),
        (None, {"command": ["x"], "max_runtime": "forever"}, "max_runtime"),
        (None, {}, "command"),
        ({"command": "x", "colour": "red"}, {}, "colour"),
        (None, {"command": ["x"], "webhooks": ["ftp://x"]}, "webhooks"),
    ],
)
def test_validation_errors_name_the_field(file_data: dict | None, overrides: dict, field: str) -> None:
    with pytest.raises(ModelyardError) as e:
        build_spec(file_data, overrides)
    assert e.value.field == field
    assert str(e.value).startswith(f"{field}: ")
    assert "Value error" not in str(e.value)


@pytest.mark.parametrize(
    ("job", "code"),
    [
        ({"state": "succeeded", "exit_code": 0}, 0),
        ({"state": "failed", "exit_code": 3}, 3),
        ({"state": "failed", "exit_code": None}, 1),
        ({"state": "stopped", "exit_code": -15}, 1),
        ({"state": "timed_out", "exit_code": None}, 1),
    ],
)
def test_job_exit_code(job: dict, code: int) -> None:
    assert job_exit_code(job) == code


def _commands(group: object, prefix: str = "") -> list[tuple[str, object]]:
    found = []
    for name, command in getattr(group, "commands", {}).items():
        found.append((prefix + name, command))
        found.extend(_commands(command, prefix + name + " "))
    return found


def test_every_command_has_help_with_an_example() -> None:
    commands = _commands(get_command(app))
    assert {name for name, _ in commands} >= {
        "server", "submit", "jobs", "show", "logs", "metrics", "stop", "restart", "clone", "wait",
        "download", "user", "user create", "run", "nodes",
    }
    for name, command in commands:
        assert command.help, f"{name} has no help"
        if not getattr(command, "commands", None):
            assert "Example: modelyard " + name.split()[0] in command.help, f"{name} has no example"


@pytest.mark.parametrize("name", ["submit", "jobs", "show", "logs", "metrics", "wait", "download", "user create", "run", "server"])
def test_help_exits_zero(name: str) -> None:
    result = CliRunner().invoke(app, [*name.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    done = cli(["jobs"], clean_env(tmp_path, MODELYARD_URL=url, MODELYARD_TOKEN="x"))
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot reach the modelyard server at {url}")
    assert done.stderr.count("\n") == 1


def test_validation_error_exits_1_naming_the_field(tmp_path: Path) -> None:
    done = cli(["submit", "--gpus", "-1", "--", "echo", "hi"], clean_env(tmp_path, MODELYARD_URL="http://127.0.0.1:9"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: resources.gpus: ")
    assert done.stderr.count("\n") == 1


def test_usage_error_exits_2_on_one_line(tmp_path: Path) -> None:
    done = cli(["submit", "--gpus", "many", "--", "echo"], clean_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "--gpus" in done.stderr
    assert done.stderr.count("\n") == 1


def test_missing_job_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    done = cli(["submit", "-f", str(tmp_path / "nope.yaml")], clean_env(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith("error: file: cannot read")


def test_run_without_local_is_a_usage_error(tmp_path: Path) -> None:
    done = cli(["run", "--", "echo"], clean_env(tmp_path))
    assert done.returncode == 2


def test_python_dash_m_runs_the_cli() -> None:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "modelyard", "--help"], capture_output=True, text=True, check=True)
    assert "submit" in out.stdout


def test_download_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    assert _inside(tmp_path, "ckpt/a.pt") == tmp_path / "ckpt" / "a.pt"
    with pytest.raises(ModelyardError):
        _inside(tmp_path, "../escape")


def test_tables_render_the_api_json() -> None:
    from rich.console import Console

    job = {"id": 7, "name": "t", "owner": "local", "state": "running", "attempts": [{}],
           "resources": {"gpus": 1, "cpus": 2.0, "memory": 2**30}, "created_at": "2024-01-01T00:00:00Z",
           "started_at": "2024-01-01T00:00:01Z", "ended_at": None}
    console = Console(record=True, width=200)
    console.print(jobs_table([job]))
    console.print(metrics_table({"loss": [{"value": 2.0}, {"value": 0.5}, {"value": 1.0}], "acc": []}))
    text = console.export_text()
    assert "running" in text and "2 cpu, 1 gpu, 1.0 GiB" in text
    assert "loss" in text and "1" in text and "0.5" in text


def test_typer_exit_passes_its_code_through() -> None:
    sub = typer.Typer()

    @sub.command()
    def boom() -> None:
        raise typer.Exit(7)

    assert CliRunner().invoke(sub, []).exit_code == 7


def test_run_local_is_one_node(tmp_path: Path) -> None:
    done = cli(["run", "--local", "--nodes", "2", "--", "echo"], clean_env(tmp_path))
    assert done.returncode == 2 and "--nodes" in done.stderr and "one node" in done.stderr


def test_tables_show_nodes_and_labels() -> None:
    from rich.console import Console

    from modelyard.cli.output import attempts_table, nodes_table

    job = {"id": 8, "name": "ddp", "owner": "local", "state": "running", "nodes": 2, "node_labels": {"gpu": "h100"},
           "resources": {"gpus": 8, "cpus": 32.0, "memory": 0}, "attempts": []}
    attempt = {"number": 1, "state": "running", "gpus": [0, 1], "nodes": [
        {"node": "n1", "gpus": [0, 1], "cores": []}, {"node": "n2", "gpus": [2, 3], "cores": []}]}
    node = {"id": "n1", "address": "10.0.0.1", "labels": {"gpu": "h100"}, "jobs": 1,
            "total": {"gpus": 8, "cpus": 64.0, "memory": 512 * 2**30}, "used": {"gpus": 2, "cpus": 32.0, "memory": 0}}
    console = Console(record=True, width=200)
    console.print(jobs_table([job]))
    console.print(attempts_table([attempt]))
    console.print(nodes_table([node]))
    text = console.export_text()
    assert "2 nodes x 32 cpu, 8 gpu on gpu=h100" in text
    assert "n1:0,1 n2:2,3" in text
    assert "10.0.0.1" in text and "2/8" in text and "32/64" in text and "0 B/512.0 GiB" in text
