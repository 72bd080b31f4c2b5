"""Building one virtualenv with uv, its output streamed into the job's log.

This module owns the uv command lines. The venv is made ``--relocatable`` so
that it still works after venv.py renames it from its temporary folder to its
cache entry (entry points and activation scripts find the venv relative to
themselves). uv never downloads an interpreter here: the venv uses the one it
was keyed by, or the build fails.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import uv

from modelyard.supervisor.runner import StartFailed

TAIL_LINES = 15  # of uv's output, in the failure message: the resolver's explanation


def uv_bin() -> str:
    return uv.find_uv_bin()


def build_venv(target: Path, python: str, requirements: str, *, note: Callable[[str], None],
               stop: threading.Event) -> None:
    """Create a venv in ``target`` (absent) with ``python`` and install ``requirements`` into it.
    StartFailed with uv's last lines when uv fails (an unresolvable requirement, say).

    The requirements are not kept in the venv, which every uid may read: they may hold an
    index URL with credentials. uv reads them from a file only the server's uid can read."""
    target.mkdir(parents=True)
    _uv(["venv", "--relocatable", "--python", python, "--no-project", str(target), "--allow-existing"],
        cwd=target, note=note, stop=stop, what="create the virtualenv")
    with tempfile.NamedTemporaryFile("w", prefix=".requirements-", suffix=".txt", dir=target.parent) as req:
        req.write(requirements)  # NamedTemporaryFile is mode 0600
        req.flush()
        _uv(["pip", "install", "--python", str(target / "bin" / "python"), "-r", req.name],
            cwd=target, note=note, stop=stop, what="install the requirements")


def _uv(args: list[str], *, cwd: Path, note: Callable[[str], None], stop: threading.Event, what: str) -> None:
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "never"  # the interpreter is part of the cache key: never another one
    env["NO_COLOR"] = "1"
    try:
        proc = subprocess.Popen([uv_bin(), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as e:
        raise StartFailed(f"could not run uv to {what}: {e}") from None
    # a stop while uv works ends the build rather than waiting for a long install
    threading.Thread(target=lambda: stop.wait() and proc.kill(), daemon=True).start()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        note("uv: " + line)
    rc = proc.wait()
    if stop.is_set():
        raise StartFailed("stopped while the environment was being built")
    if rc != 0:
        raise StartFailed(f"could not {what} (uv exited with code {rc}):\n" + "\n".join(tail))
