"""Printing a job's log, once or following it live, and the exit code a job maps to.

A log line goes to stdout (the job's stderr lines to stderr) exactly as the job
printed it: never through Rich, whose markup would eat ``[brackets]``.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from modelyard.client import Client, ClientError, is_final

PAGE = 1000
RECONNECTS = 5
POLL_INTERVAL = 0.5


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
    offset, lines = 0, []
    while True:
        page = client.job_logs(job_id, attempt=attempt, offset=offset, limit=PAGE, node=node)
        attempt = page["attempt"]
        tag = node is None and page.get("nodes", 1) > 1
        if as_json:
            lines.extend(page["lines"])
        else:
            for line in page["lines"]:
                print_line(line, tag=tag)
        if not page["lines"] or page["next_offset"] <= offset:
            break
        offset = page["next_offset"]
    if as_json:
        sys.stdout.write(json.dumps({"attempt": attempt, "lines": lines}, indent=2) + "\n")


def follow_log(client: Client, job_id: int, *, attempt: int | None = None, as_json: bool = False,
               out: TextIO | None = None, node: int | None = None) -> int:
    """Print an attempt's lines (of node rank ``node`` only, if given) until it ends; reconnects a
    dropped stream. Returns the attempt.

    With no ``attempt``, the latest; for a job not placed yet, the first one to start.
    """
    page = client.job_logs(job_id, attempt=attempt, offset=0, limit=PAGE, node=node)
    attempt, offset = page["attempt"], 0
    tag = node is None and page.get("nodes", 1) > 1
    while page["lines"]:
        for line in page["lines"]:
            print_line(line, as_json=as_json, out=out, tag=tag)
        offset = page["next_offset"]
        if page["done"]:
            return attempt
        page = client.job_logs(job_id, attempt=attempt, offset=offset, limit=PAGE, node=node)
    if page["done"]:
        return attempt
    failures = 0
    while True:
        try:
            for event in client.stream_logs(job_id, attempt=attempt, offset=offset, node=node):
                if event.event == "line":
                    print_line(event.data, as_json=as_json, out=out, tag=tag)
                    offset = event.data["n"] + 1
                    failures = 0
                elif event.event == "end":
                    # A job queued when we started has its attempt number only now.
                    return (event.data or {}).get("attempt") or attempt
        except ClientError as e:
            failures += 1
            if e.status is not None or failures > RECONNECTS:
                raise
            time.sleep(min(2.0, 0.2 * 2**failures))


def follow_job(client: Client, job_id: int, *, as_json: bool = False, out: TextIO | None = None) -> dict[str, Any]:
    """Follow every attempt's log (retries and restarts included) until the job ends; the final JOB."""
    attempt = follow_log(client, job_id, as_json=as_json, out=out)
    while True:
        job = client.get_job(job_id)
        if is_final(job):
            return job
        if job["attempt"] > attempt:
            attempt = follow_log(client, job_id, attempt=job["attempt"], as_json=as_json, out=out)
        else:
            # The attempt ended and the job's next state (retry or final) is not stored yet.
            time.sleep(POLL_INTERVAL)
