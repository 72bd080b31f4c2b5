"""Test helper: a real modelyard server in a subprocess, and the CLI as a subprocess.

``start_server(home)`` runs ``python -m modelyard server --embedded`` with
MODELYARD_HOME=home and waits until ``server.json`` names a healthy URL;
``cli(args, env)`` runs ``python -m modelyard ARGS`` and returns the completed process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import wait_for

from modelyard.client import Client, read_token, running_server_url

CLIENT_VARS = ("MODELYARD_URL", "MODELYARD_TOKEN", "MODELYARD_DATABASE_URL", "MODELYARD_STORAGE_URL")


@dataclass
class ServerProc:
    url: str
    token: str
    home: Path
    proc: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        """The environment a CLI needs to talk to this server."""
        return clean_env(self.home, MODELYARD_URL=self.url, MODELYARD_TOKEN=self.token)

    def client(self) -> Client:
        return Client(self.url, self.token)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    env.update(MODELYARD_HOME=str(home), MODELYARD_HEARTBEAT_TIMEOUT="30", MODELYARD_STOP_GRACE="2")
    env.update(extra)
    return env


@contextmanager
def start_server(home: Path) -> Iterator[ServerProc]:
    home.mkdir(parents=True, exist_ok=True)
    with (home / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard", "server", "--embedded"],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env(home), start_new_session=True,
        )
    try:
        url = wait_for(lambda: _healthy(home, proc), timeout=60, what="the server to answer /health")
        token = read_token(home)
        assert token, "the server wrote no token file"
        yield ServerProc(str(url), token, home, proc)
    finally:
        stop_process(proc.pid)
        proc.wait(timeout=20)


def _healthy(home: Path, proc: subprocess.Popen[bytes]) -> str | None:
    if proc.poll() is not None:
        raise AssertionError(f"server exited with {proc.returncode}:\n{(home / 'server.log').read_text()[-3000:]}")
    return running_server_url(home)


def stop_process(pid: int) -> None:
    """SIGTERM, and wait (bounded) until it is gone; SIGKILL if it lingers."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_for(lambda: not _alive(pid), timeout=15, what=f"process {pid} to exit")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def cli(args: list[str], env: Mapping[str, str], *, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m modelyard ARGS``; never a traceback on stderr, whatever happened."""
    done = subprocess.run(
        [sys.executable, "-m", "modelyard", *args], env=dict(env), cwd=cwd,
        capture_output=True, text=True, timeout=timeout,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done
