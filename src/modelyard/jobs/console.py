"""Notebook consoles (README "Notebook consoles"): what makes a job a JupyterLab console, and where the
server finds it.

A console is a job whose spec has ``console`` set; only the consoles route sets it, with the command
``python -m modelyard.notebooks.console``. The spec, not anything the job prints, is what the server
trusts: the proxy's address is never read from the job.

Nomenclature: the *console token* is what the proxy shows JupyterLab (``Authorization: token ...``);
the browser never sees it. Both it and the console's *port* are derived by HMAC from the attempt's
report-token hash, which the server stores and the job's uid never reads (as jobs/run_token.py does),
so the server computes them again for every request with no table of its own, and a job cannot move
the proxy to another port or host. The port lies in ``PORTS`` (below Linux's ephemeral range, so no
client socket holds it); two live consoles on one machine share one with a chance of 1 in
``len(PORTS)``, and the second then fails at its start. A port is a machine's, not a job's: another
user's process could take it first, so the proxy also checks, at every request, that whoever listens
there is the job's own uid, and sends nothing otherwise.

Where, by executor:

- local: JupyterLab listens on ``HOST`` (127.0.0.1), the proxy connects there, and the server reads
  the listener's uid from its own /proc/net/tcp (services/consoles.py ``check_listener``).
- ray: the console runs on a node that may be another machine, so it listens on that node's address
  as Ray's node table has it (``NodeManagerAddress`` of the node the placement chose): the executor
  writes it into ``HOST_VAR`` at launch and the proxy connects to the same entry, never to an address
  the job gives. Not 0.0.0.0, and not loopback, which the server could not reach. The address is one
  of the cluster's network, which Ray already requires to be trusted (anyone on it can run code on
  the cluster); on it, and to the node's other users, JupyterLab answers nothing without the console
  token. The server cannot read another machine's /proc, so the listener check is asked of the
  attempt's Ray actor (executors/ray_actor.py ``listeners``), which runs the platform's code as the
  platform's user on that node, not as the job's uid, and answers who listens on the port there and
  whom the command runs as. It is asked at every request, as the local check is, rather than once by
  the supervisor before a "ready" report: a check made once would let a squatter that binds the port
  after JupyterLab exits (while the attempt is still seen running) get the owner's next requests.
  When the actor does not answer, the proxy sends nothing.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelyard.jobs.units import parse_duration

DEFAULT_IDLE_TIMEOUT = 3600.0
PORTS = range(20000, 30000)
HOST = "127.0.0.1"  # on the local executor a console listens on its own machine only; the proxy is its one way in
MODULE = "modelyard.notebooks.console"
TOKEN_NAME = "console job {job_id}"  # the user token a console's cells submit with (MODELYARD_TOKEN)
# what the console process reads (notebooks/console.py); the platform's, set at each launch
PORT_VAR, TOKEN_VAR, BASE_URL_VAR, IDLE_VAR, HOST_VAR = (
    "MODELYARD_CONSOLE_PORT", "MODELYARD_CONSOLE_TOKEN", "MODELYARD_CONSOLE_BASE_URL", "MODELYARD_CONSOLE_IDLE_TIMEOUT",
    "MODELYARD_CONSOLE_HOST")


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


def authority(host: str, port: int) -> str:
    """``host:port`` for a URL (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def console_token(attempt_id: int, token_hash: str) -> str:
    return _mac(attempt_id, token_hash, "token")


def console_port(attempt_id: int, token_hash: str) -> int:
    return PORTS.start + int(_mac(attempt_id, token_hash, "port")[:12], 16) % len(PORTS)


def _mac(attempt_id: int, token_hash: str, what: str) -> str:
    return hmac.new(bytes.fromhex(token_hash), f"console-{what}:{attempt_id}".encode(), hashlib.sha256).hexdigest()
