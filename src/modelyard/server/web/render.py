"""Templates and the filters they use; one ``respond`` for HTML or the same data as JSON.

A page's context is plain JSON-able data (the API's shapes), so
``?format=json`` returns exactly what the template was given — the datasette
way: every page's data is also an API response.
"""
from __future__ import annotations

import functools
import shlex
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

import modelyard
from modelyard.jobs.nodes import format_labels
from modelyard.jobs.params import param_text
from modelyard.jobs.units import format_duration, format_size
from modelyard.db.records import User

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATES_DIR = Path(__file__).parent / "templates"

# state -> (icon, css class); the icon and the word together, so colour is never the only signal
STATE_ICONS: dict[str, str] = {
    "queued": "◷", "starting": "◌", "running": "▶", "stopping": "◼",
    "succeeded": "✔", "failed": "✖", "stopped": "■", "timed_out": "⌛", "lost": "?",
}
ACTIVE_STATES = ("starting", "running", "stopping")
TERMINAL_STATES = ("succeeded", "failed", "stopped", "timed_out", "lost")


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def run_time(job: dict[str, Any]) -> str:
    """How long the job has run (so far, or in all), or '-' before it started."""
    start, end = _epoch(job.get("started_at")), _epoch(job.get("ended_at"))
    if start is None:
        return "-"
    return format_duration((end or time.time()) - start)


def queue_time(job: dict[str, Any]) -> str:
    """How long it waited (or has been waiting) for its resources."""
    queued = _epoch(job.get("queued_at") or job.get("created_at"))
    start = _epoch(job.get("started_at"))
    if queued is None:
        return "-"
    if start is None or start < queued:  # a restarted job is waiting again
        return format_duration(time.time() - queued) if job["state"] == "queued" else "-"
    return format_duration(start - queued)


def when(iso: str | None) -> str:
    return iso.replace("T", " ").split(".")[0].removesuffix("Z") if iso else "-"


def resources(r: dict[str, Any]) -> str:
    parts = [f"{r['gpus']} GPU" if r.get("gpus") else "", f"{r.get('cpus', 0):g} CPU"]
    if r.get("memory"):
        parts.append(format_size(r["memory"]))
    return " · ".join(p for p in parts if p)


def placement(job: dict[str, Any]) -> str:
    """A job's resources (per node), as "2 nodes × ..." where it has several, and its labels."""
    if job.get("kind") == "run":  # an MLflow run with no process holds nothing
        return "none (no process)"
    text = resources(job.get("resources") or {})
    if (job.get("nodes") or 1) > 1:
        text = f"{job['nodes']} nodes × {text}"
    labels = job.get("node_labels") or {}
    if labels:
        text += " · " + format_labels(labels)
    return text


def metric_value(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def clock(t: float | None) -> str:
    """An epoch time as the server's local date and time, to the second."""
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t is not None else "-"


def command_text(cmd: list[str] | str) -> str:
    return cmd if isinstance(cmd, str) else shlex.join(cmd)


def next_sort(current: str, key: str) -> str:
    """A header's link: ascending first, then descending, then ascending again."""
    return f"-{key}" if current == key else key


def _env() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(run_time=run_time, queue_time=queue_time, when=when, resources=resources, placement=placement,
                       size=format_size, duration=format_duration, metric_value=metric_value,
                       command_text=command_text, clock=clock, param_text=param_text)
    env.globals.update(next_sort=next_sort, STATE_ICONS=STATE_ICONS, ACTIVE_STATES=ACTIVE_STATES, TERMINAL_STATES=TERMINAL_STATES,
                       version=modelyard.__version__)
    return env


@functools.cache
def templates() -> Environment:
    """Made by the first render: importing Jinja2 is no part of a server start."""
    return _env()


def render(name: str, /, **context: Any) -> str:
    return templates().get_template(name).render(**context)


def respond(request: Request, template: str, data: dict[str, Any], *, user: User | None,
            status_code: int = 200) -> Response:
    """The page as HTML, or with ``?format=json`` the data it shows."""
    if request.query_params.get("format") == "json":
        return JSONResponse(data, status_code=status_code)
    me = {"name": user.name, "is_admin": user.is_admin} if user else None
    events_after = getattr(request.state, "events_after", None)
    unread = getattr(request.state, "unread", None)
    context = {"unread": unread, **data}  # a page's own unread count (the notices page's) is the same number
    return HTMLResponse(render(template, request=request, me=me, events_after=events_after, **context),
                        status_code=status_code)
