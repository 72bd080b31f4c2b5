"""Sweeps: ``sweep -f sweep.yaml`` (snapshot the code once, as ``submit`` does, and start the search),
``sweep show ID``, ``sweep stop ID``, ``sweeps``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from modelyard.cli.code import upload_workdir
from modelyard.cli.connect import get_client
from modelyard.cli.jobs import Json
from modelyard.cli.options import invalid
from modelyard.cli.output import console, note, print_json
from modelyard.jobs.sweep import SweepSpec

sweep_app = typer.Typer()  # its help is the callback's docstring
SweepId = Annotated[int, typer.Argument(metavar="ID", help="the sweep's id")]


@sweep_app.callback(invoke_without_command=True)
def sweep(
    ctx: typer.Context,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="the sweep YAML file")] = None,
    as_json: Json = False,
) -> None:
    """Start a sweep from a YAML file: its job's folder (job.workdir, default: the file's) is snapshotted once, for every trial.

    Example: modelyard sweep -f sweep.yaml; then modelyard sweep show ID, modelyard sweep stop ID.
    """
    if ctx.invoked_subcommand is not None:
        return
    if file is None:
        raise invalid("file", "give the sweep file: modelyard sweep -f sweep.yaml (or: sweep show ID, sweep stop ID)")
    spec = load_sweep_file(file)
    workdir = Path(spec.job.workdir or ".")
    if not workdir.is_absolute():
        workdir = file.parent / workdir
    with get_client() as client:
        snapshot = upload_workdir(client, workdir, show_progress=not as_json, field="job.workdir")
        made = client.create_sweep(spec.model_dump(mode="json", exclude={"job": {"workdir"}}), snapshot=snapshot)
    if as_json:
        return print_json(made)
    note(f"started sweep {made['id']} ({made['name']}): {made['max_trials']} trials, {made['parallel']} at a time")
    print(made["id"])


def load_sweep_file(path: Path) -> SweepSpec:
    try:
        text = path.read_text()
    except OSError as e:
        raise invalid("file", f"cannot read {path}: {e.strerror}") from None
    try:
        return SweepSpec.from_yaml(text)
    except ValueError as e:
        raise invalid("file", f"{path}: {e}") from None


@sweep_app.command("show")
def show(sweep_id: SweepId, as_json: Json = False) -> None:
    """The sweep's trials (parameters, objective, state) and its best trial.

    Example: modelyard sweep show 3
    """
    with get_client() as client:
        s = client.get_sweep(sweep_id)
    if as_json:
        return print_json(s)
    goal = s["metric"]["goal"]
    console.print(f"sweep {s['id']} {s['name']}: [bold]{s['state']}[/bold]  {s['method']}, "
                  f"{goal} {s['metric']['name']}, {len(s['trials'])}/{s['max_trials']} trials, {s['parallel']} at a time")
    if s.get("message"):
        console.print(s["message"])
    console.print(trials_table(s))
    best = s.get("best")
    if best:
        console.print(f"best: trial {best['number']} (job {best['job_id']}), {s['metric']['name']} = {best['value']:g}, "
                      + ", ".join(f"{k}={v}" for k, v in best["params"].items()))


def trials_table(s: dict[str, Any]) -> Table:
    table = Table(box=None)
    for head in ("trial", "job", *s["parameters"], s["metric"]["name"], "state"):
        table.add_column(head, justify="right" if head not in ("state",) else "left")
    best = (s.get("best") or {}).get("number")
    for t in s["trials"]:
        value = t["value"] if t["value"] is not None else t["last"]
        shown = "-" if value is None else f"{value:g}" + ("" if t["value"] is not None else " (last)")
        state = t["state"] if t["state"] != "running" else (t["job_state"] or "asked")
        row = [str(t["number"]) + (" *" if t["number"] == best else ""), str(t["job_id"] or "-"),
               *(_text(t["params"].get(n)) for n in s["parameters"]), shown, state]
        table.add_row(*row)
    return table


def _text(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@sweep_app.command("stop")
def stop(sweep_id: SweepId, as_json: Json = False) -> None:
    """Stop the sweep and its trials in flight.

    Example: modelyard sweep stop 3
    """
    with get_client() as client:
        s = client.stop_sweep(sweep_id)
    if as_json:
        return print_json(s)
    note(f"sweep {s['id']}: {s['state']}")


def sweeps(
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
    as_json: Json = False,
) -> None:
    """List your sweeps, newest first.

    Example: modelyard sweeps
    """
    with get_client() as client:
        listing = client.list_sweeps(limit=limit)
    if as_json:
        return print_json(listing)
    table = Table(box=None)
    for head in ("id", "name", "state", "method", "metric", "trials", "best job"):
        table.add_column(head)
    for s in listing["sweeps"]:
        table.add_row(str(s["id"]), s["name"], s["state"], s["method"], f"{s['metric']['goal']} {s['metric']['name']}",
                      str(s["max_trials"]), str(s["best_job_id"] or "-"))
    console.print(table)
