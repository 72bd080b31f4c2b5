"""The peers: pinned MLflow, Ray and FastTrackML in their own virtualenv, driven through ``peer_agent``.

The virtualenv (``bench/.peers-venv``, gitignored) is created with the resolved
interpreter on first use and reinstalled only when the pins change.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
VENV = HERE / ".peers-venv"
PINS = ["mlflow==3.17.2", "ray[default]==2.60.0", "psycopg[binary]>=3.2", "fasttrackml==0.6.0"]
# FastTrackML's wheel is wanted for its server binary (``fml``) only: its own Python package asks for
# mlflow<3, but the client every server is measured with is the MLflow pinned above
NO_DEPS = {"fasttrackml==0.6.0"}
STAMP = VENV / ".bench-pins"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure_installed(log: Any = sys.stderr) -> Path:
    wanted = "\n".join(PINS)
    if python().exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return python()
    base = getattr(sys, "_base_executable", sys.executable)  # the real interpreter, not a shim or this venv
    print(f"bench: installing the peers into {VENV}: {' '.join(PINS)}", file=log)
    if not python().exists():
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python()), "-m", "pip", "install", "-q", *(p for p in PINS if p not in NO_DEPS)], check=True)
    subprocess.run([str(python()), "-m", "pip", "install", "-q", "--no-deps", *NO_DEPS], check=True)
    STAMP.write_text(wanted)
    return python()


class PeerAgent:
    """``peer_agent.py`` under the peers' interpreter (or ``python``); ``call`` sends one request."""

    def __init__(self, python: str | Path | None = None) -> None:
        self.proc = subprocess.Popen([str(python or ensure_installed()), str(HERE / "peer_agent.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self.reply(op)

    def send(self, op: str, **args: Any) -> None:
        """A request without waiting: the agent works on it while the caller does something else."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def reply(self, op: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer agent exited during {op}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"peer {op}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
