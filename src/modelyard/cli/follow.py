"""Printing a job's log, once or following it live, and the exit code a job maps to.

A log line goes to stdout (the job's stderr lines to stderr) exactly as the job
printed it: never through Rich, whose markup would eat ``[brackets]``.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from modelyard.client import Client
from modelyard.joblog import LogLines


def job_exit_code(job: Mapping[str, Any]) -> int:
    """0 for success; the command's exit code when it has a usable one; else 1."""
    if job["state"] == "succeeded":
        return 0
    code = job.get("exit_code")
    return code if isinstance(code, int) and 0 < code < 256 else 1


def print_line(line: Mapping[str, Any], *, as_json: bool = False, out: TextIO | None = None,
               tag: bool = False) -> None:
    """One line as the job printed it; ``tag``: prefixed ``[node R]`` (a job on several nodes)."""
    if as_json:
        stream = out or sys.stdout
        stream.write(json.dumps(line) + "\n")
    else:
        stream = out or (sys.stderr if line.get("stream") == "stderr" else sys.stdout)
        stream.write((f"[node {line.get('node', 0)}] " if tag else "") + line["text"] + "\n")
    stream.flush()


def print_log(client: Client, job_id: int, *, attempt: int | None = None, as_json: bool = False,
              node: int | None = None) -> None:
    """Every line stored so far (of node rank ``node`` only, if given); with ``as_json``, one
    object ``{"attempt", "lines"}``."""
    log = LogLines(client, job_id, attempt=attempt, node=node)
    if as_json:
        lines = list(log)
        sys.stdout.write(json.dumps({"attempt": log.attempt, "lines": lines}, indent=2) + "\n")
        return
    for line in log:
        print_line(line, tag=node is None and log.nodes > 1)


def follow_log(client: Client, job_id: int, *, attempt: int | None = None, as_json: bool = False,
               out: TextIO | None = None, node: int | None = None) -> int:
    """Print an attempt's lines (of node rank ``node`` only, if given) until it ends; reconnects a
    dropped stream. Returns the attempt.

    With no ``attempt``, the latest; for a job not placed yet, the first one to start.
    """
    log = LogLines(client, job_id, attempt=attempt, node=node, follow=True)
    for line in log:
        print_line(line, as_json=as_json, out=out, tag=node is None and log.nodes > 1)
    return log.attempt  # type: ignore[return-value]


def follow_job(client: Client, job_id: int, *, as_json: bool = False, out: TextIO | None = None) -> dict[str, Any]:
    """Follow every attempt's log (retries and restarts included) until the job ends; the final JOB."""
    log = LogLines(client, job_id, follow=True, every_attempt=True)
    for line in log:
        print_line(line, as_json=as_json, out=out, tag=log.nodes > 1)
    assert log.job is not None
    return log.job
