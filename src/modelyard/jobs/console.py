"""Notebook consoles (README "Notebook consoles"): what makes a job a JupyterLab console, and where the
server finds it.

A console is a job whose spec has ``console`` set; only the consoles route sets it, with the command
``python -m modelyard.notebooks.console``. The spec, not anything the job prints, is what the server
trusts: the proxy's address is never read from the job.

Nomenclature: the *console token* is what the proxy shows JupyterLab (``Authorization: token ...``);
the browser never sees it. Both it and the console's *port* are derived by HMAC from the attempt's
report-token hash, which the server stores and the job's uid never reads (as jobs/run_token.py does),
so the server computes them again for every request with no table of its own, and a job cannot move
the proxy to another port or host: the proxy connects to 127.0.0.1 at the derived port, nothing else.
The port lies in ``PORTS`` (below Linux's ephemeral range, so no client socket holds it); two live
consoles share one with a chance of 1 in ``len(PORTS)``, and the second then fails at its start. A
port is a machine's, not a job's: another user's process could take it first, so the proxy also
checks that whoever listens there is the job's own uid (services/consoles.py ``check_listener``).
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelyard.jobs.units import parse_duration

DEFAULT_IDLE_TIMEOUT = 3600.0
PORTS = range(20000, 30000)
HOST = "127.0.0.1"  # a console listens on its own machine only; the proxy is its one way in
MODULE = "modelyard.notebooks.console"
TOKEN_NAME = "console job {job_id}"  # the user token a console's cells submit with (MODELYARD_TOKEN)
# what the console process reads (notebooks/console.py); the platform's, set at each launch
PORT_VAR, TOKEN_VAR, BASE_URL_VAR, IDLE_VAR = (
    "MODELYARD_CONSOLE_PORT", "MODELYARD_CONSOLE_TOKEN", "MODELYARD_CONSOLE_BASE_URL", "MODELYARD_CONSOLE_IDLE_TIMEOUT")


class Console(BaseModel):
    """A job's console settings: it ends itself after ``idle_timeout`` seconds with no activity."""

    model_config = ConfigDict(extra="forbid")

    idle_timeout: float = Field(DEFAULT_IDLE_TIMEOUT, gt=0, le=30 * 86400, description="seconds")

    @field_validator("idle_timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v


def base_url(job_id: int) -> str:
    """The path JupyterLab serves under: the proxy's own, so its links need no rewriting."""
    return f"/ui/jobs/{job_id}/lab/"


def console_token(attempt_id: int, token_hash: str) -> str:
    return _mac(attempt_id, token_hash, "token")


def console_port(attempt_id: int, token_hash: str) -> int:
    return PORTS.start + int(_mac(attempt_id, token_hash, "port")[:12], 16) % len(PORTS)


def _mac(attempt_id: int, token_hash: str, what: str) -> str:
    return hmac.new(bytes.fromhex(token_hash), f"console-{what}:{attempt_id}".encode(), hashlib.sha256).hexdigest()
