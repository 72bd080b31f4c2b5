"""A real modelyard server in a subprocess, for end-to-end tests: start, kill, restart."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from conftest import kill_tree, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, home: Path, *, env: dict[str, str] | None = None, port: int | None = None,
                 log_path: Path | None = None) -> None:
        self.home = home
        self.log_path = log_path or home / "test-server.log"  # elsewhere when home's disk is to be filled
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "MODELYARD_HOME": str(home), **(env or {})}
        for var in ("MODELYARD_URL", "MODELYARD_TOKEN"):
            self.env.pop(var, None)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> "ServerProcess":
        self.home.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.server", "--port", str(self.port)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(self._healthy, timeout=timeout, what=f"server on {self.url} (log: {self.log_path})")
        self.token = (self.home / "token").read_text().strip()
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/api/v1", timeout=30,
                            headers={"Authorization": f"Bearer {token or self.token}"})

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.log.close()

    def stop(self) -> None:
        """Stop the server and end the supervisors it left running (they outlive a server by design)."""
        self.kill(signal.SIGTERM)
        reap_supervisors(self.home)


def reap_supervisors(home: Path) -> None:
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "modelyard.supervisor" in cmd and any(str(home) in arg for arg in cmd):
            kill_tree(proc.pid)


def ui_sign_in(c: httpx.Client, token: str, next: str = "/ui/jobs") -> httpx.Response:
    """Sign an HTTP client in as a browser does: fetch the form (its CSRF value and cookie), post it."""
    import re

    form = c.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text[:500]
    return c.post("/ui/login", data={"token": token, "next": next, "csrf": csrf.group(1)})
