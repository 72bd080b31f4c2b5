"""What the CLI prints: JSON for ``--json``, Rich tables and progress bars for people.

Data goes to stdout; progress bars and notes go to stderr, so ``--json`` output
can be piped. Every table here is built from the API's JSON, nothing else.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from modelyard.client import Progress as ProgressCallback
from modelyard.jobs.nodes import format_labels
from modelyard.jobs.params import param_text
from modelyard.jobs.units import format_duration, format_size

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

STATE_STYLE = {
    "queued": "yellow", "starting": "cyan", "running": "bold blue", "stopping": "magenta",
    "succeeded": "green", "failed": "bold red", "stopped": "dim", "timed_out": "red", "lost": "red",
}


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def note(message: str) -> None:
    """A remark for a person, on stderr."""
    err_console.print(message)


def state_text(state: str) -> str:
    return f"[{STATE_STYLE.get(state, '')}]{state}[/]"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def seconds_between(start: str | None, end: str | None) -> float | None:
    """From ``start`` to ``end`` (or now, while it is open)."""
    t0 = parse_time(start)
    if t0 is None:
        return None
    t1 = parse_time(end) or datetime.now(timezone.utc)
    return max(0.0, (t1 - t0).total_seconds())


def format_resources(res: Mapping[str, Any]) -> str:
    parts = [f"{res.get('cpus', 0):g} cpu"]
    if res.get("gpus"):
        parts.append(f"{res['gpus']} gpu")
    if res.get("memory"):
        parts.append(format_size(res["memory"]))
    return ", ".join(parts)


def format_placement(job: Mapping[str, Any]) -> str:
    """A job's resources, per node, with its node count and labels where it has them."""
    text = format_resources(job.get("resources") or {})
    if (job.get("nodes") or 1) > 1:
        text = f"{job['nodes']} nodes x {text}"
    labels = job.get("node_labels") or {}
    if labels:
        text += " on " + format_labels(labels)
    return text


def jobs_table(jobs: list[dict[str, Any]], params: Sequence[str] = ()) -> Table:
    """``params``: parameter names shown as columns of their own, after the name (``jobs --param lr``)."""
    table = Table(box=None, header_style="bold")
    columns = ("id", "name", *params, "owner", "state", "resources", "attempts", "age", "duration", "tags")
    for column in columns:
        table.add_column(column, justify="right" if column in ("id", "attempts", *params) else "left")
    for job in jobs:
        values = job.get("params") or {}
        table.add_row(
            str(job["id"]), job.get("name") or "",
            *(param_text(values[n]) if n in values else "" for n in params),
            job.get("owner") or "", state_text(job["state"]),
            _resources(job), str(len(job.get("attempts") or [])),
            format_duration(seconds_between(job.get("created_at"), None)),
            format_duration(seconds_between(job.get("started_at"), job.get("ended_at"))),
            " ".join(job.get("tags") or []),
        )
    return table


def _resources(job: Mapping[str, Any]) -> str:
    """What it holds; a run with no process (README "MLflow") holds nothing, and says what it is."""
    return "MLflow run, no process" if job.get("kind") == "run" else format_placement(job)


def job_summary(job: Mapping[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    command = job.get("command")
    rows = [
        ("job", f"{job['id']}  {job.get('name') or ''}"),
        ("state", state_text(job["state"]) + (f"  exit code {job['exit_code']}" if job.get("exit_code") is not None else "")),
        ("message", job.get("message") or ""),
        ("owner", job.get("owner") or ""),
        ("command", command if isinstance(command, str) else " ".join(command or [])),
        ("resources", _resources(job)),
        ("processes", f"{job['nproc_per_node']} per node" if job.get("nproc_per_node") else ""),
        ("runs in", runs_in(job)),
        ("priority", str(job.get("priority", 0))),
        ("max runtime", format_duration(job.get("max_runtime"))),
        ("sync every", format_duration(job.get("sync_interval"))),
        ("retries", str(job.get("retries", 0))),
        ("env", " ".join(f"{k}={v}" for k, v in (job.get("env") or {}).items())),
        ("params", " ".join(f"{k}={param_text(v)}" for k, v in (job.get("params") or {}).items())),
        ("tags", " ".join(job.get("tags") or [])),
        ("secrets", " ".join(f"{k}={v}" for k, v in (job.get("secrets") or {}).items())),  # values are ***
        ("resumes", f"job {job['resume_from']}" if job.get("resume_from") else ""),
        ("created", job.get("created_at") or ""),
    ]
    for key, value in rows:
        if value:
            table.add_row(f"[bold]{key}[/]", value)
    return table


def runs_in(job: Mapping[str, Any]) -> str:
    """What the job runs in: its named environment, and the image or requirements it was pinned to."""
    named = f"environment {job['environment']}: " if job.get("environment") else ""
    if job.get("image"):
        return f"{named}image {job['image']}"
    if job.get("requirements"):
        pins = [ln.strip() for ln in job["requirements"].splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "-"))]
        return f"{named}a uv virtualenv of {', '.join(pins[:4])}{', ...' if len(pins) > 4 else ''}"
    return ""  # the server's Python: said by saying nothing, as before


def attempts_table(attempts: list[dict[str, Any]]) -> Table:
    table = Table(title="attempts", box=None, header_style="bold", title_justify="left")
    for column in ("#", "state", "exit code", "gpus", "started", "duration", "message"):
        table.add_column(column)
    for a in attempts:
        table.add_row(
            str(a["number"]), state_text(a["state"]), _opt(a.get("exit_code")), _where(a), a.get("started_at") or "-",
            format_duration(seconds_between(a.get("started_at"), a.get("ended_at"))),
            a.get("message") or a.get("reason") or "",
        )
    return table


def _where(attempt: Mapping[str, Any]) -> str:
    """An attempt's GPUs; on several nodes, ``node:gpus`` per node rank."""
    slices = attempt.get("nodes") or []
    if len(slices) > 1:
        return " ".join(f"{s['node']}:{','.join(str(g) for g in s['gpus']) or '-'}" for s in slices)
    return ",".join(str(g) for g in attempt.get("gpus") or []) or "-"


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    """The platform's nodes (GET /capacity): what each has, and what running jobs use there."""
    table = Table(box=None, header_style="bold")
    for column in ("node", "address", "labels", "gpus", "cpus", "memory", "jobs"):
        table.add_column(column, justify="right" if column in ("gpus", "cpus", "jobs") else "left")
    for n in nodes:
        total, used = n["total"], n["used"]
        table.add_row(
            n["id"], n.get("address") or "-", format_labels(n["labels"]) or "-",
            f"{used['gpus']}/{total['gpus']}", f"{used['cpus']:g}/{total['cpus']:g}",
            f"{format_size(used['memory'])}/{format_size(total['memory'])}", str(n.get("jobs", 0)),
        )
    return table


def events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(title="events", box=None, header_style="bold", title_justify="left")
    for column in ("time", "attempt", "change", "reason", "by"):
        table.add_column(column)
    for e in events:
        change = f"{e.get('from') or '-'} -> {state_text(e['to'])}"
        table.add_row(str(e.get("time") or ""), _opt(e.get("attempt")), change, e.get("reason") or "",
                      e.get("actor") or "")
    return table


def metrics_table(metrics: Mapping[str, list[dict[str, Any]]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("metric", "points", "last", "min", "max"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, points in sorted(metrics.items()):
        values = [p["value"] for p in points]
        if values:
            table.add_row(name, str(len(values)), f"{values[-1]:.6g}", f"{min(values):.6g}", f"{max(values):.6g}")
        else:
            table.add_row(name, "0", "-", "-", "-")
    return table


def _opt(value: Any) -> str:
    return "-" if value is None else str(value)


@contextmanager
def byte_progress(description: str, *, enabled: bool = True, close_when_done: bool = False) -> Iterator[ProgressCallback]:
    """A transfer bar on stderr; yields the ``progress(done, total)`` callback the client takes.

    ``close_when_done``: take the bar off the screen once ``done`` reaches ``total``
    (for work that goes on printing inside the block, like ``run --local``).
    """
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=err_console, transient=True, disable=not enabled,
    )
    with bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)
            if close_when_done and total is not None and done >= total:
                bar.stop()

        yield update
