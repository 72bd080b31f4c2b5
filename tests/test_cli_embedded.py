"""The embedded default: with no MODELYARD_URL the CLI starts one local server per home and reuses it."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import clean_env, cli, stop_process

from modelyard.client import Client, ClientError, ensure_embedded_server, read_token


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    h = tmp_path / "home"
    yield h
    try:
        pid = json.loads((h / "server.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return
    stop_process(pid)


def test_two_cli_calls_share_one_embedded_server(home: Path) -> None:
    env = clean_env(home)
    first = cli(["jobs", "--json"], env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["jobs"] == []
    info = json.loads((home / "server.json").read_text())
    assert info["url"].startswith("http://127.0.0.1:")
    assert stat.S_IMODE((home / "token").stat().st_mode) == 0o600

    second = cli(["jobs", "--json"], env)
    assert second.returncode == 0, second.stderr
    assert json.loads((home / "server.json").read_text()) == info
    assert (home / "server.log").read_text().count("listening on") == 1


def test_concurrent_first_calls_start_one_server(home: Path) -> None:
    env = clean_env(home)
    procs = [
        subprocess.Popen([sys.executable, "-m", "modelyard", "jobs", "--json"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
    assert (home / "server.log").read_text().count("listening on") == 1


def test_client_from_env_uses_the_embedded_server(home: Path) -> None:
    env = clean_env(home)
    with Client.from_env(env) as client:
        assert client.me()["name"] == "local"
        assert client.token == read_token(home)
    assert ensure_embedded_server(home) == client.url


def test_a_dead_server_is_replaced(home: Path) -> None:
    env = clean_env(home)
    assert cli(["jobs"], env).returncode == 0
    old = json.loads((home / "server.json").read_text())
    stop_process(old["pid"])
    assert cli(["jobs"], env).returncode == 0
    new = json.loads((home / "server.json").read_text())
    assert new["pid"] != old["pid"]


def test_a_server_that_cannot_start_is_one_error_line(home: Path) -> None:
    # A database URL of no known dialect makes the server exit at start-up.
    env = clean_env(home, MODELYARD_DATABASE_URL="nosuchdialect://nowhere/db")
    done = cli(["jobs"], env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: the embedded server exited")
    with pytest.raises(ClientError):
        ensure_embedded_server(home, env=env, timeout=30)
    assert not os.environ.get("MODELYARD_URL")
