"""``modelyard compare``: jobs side by side (GET /compare), as Rich tables, JSON or a CSV file."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from modelyard.cli.connect import get_client
from modelyard.cli.output import console, format_placement, note, print_json, state_text
from modelyard.jobs.units import format_duration


def compare(
    job_ids: Annotated[list[int], typer.Argument(metavar="ID", help="the jobs to compare (at most 50)", min=1)],
    csv_file: Annotated[Optional[Path], typer.Option("--csv", metavar="FILE",
                                                     help="also write one row per job to FILE (- for stdout)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Compare jobs: their parameters (differing ones highlighted), the spec fields that differ, the
    last and best value of each metric (best: min for losses and errors, else max), durations.

    Example: modelyard compare 3 5 7 --csv runs.csv
    """
    with get_client() as client:
        data = client.compare(job_ids)
        text = client.compare_csv(job_ids) if csv_file is not None else None
    if text is not None and str(csv_file) == "-":
        typer.echo(text, nl=False)
        return
    if text is not None:
        csv_file.write_text(text, encoding="utf-8", newline="")  # type: ignore[union-attr]
        note(f"{len(data['jobs'])} jobs written to {csv_file}")
    if as_json:
        return print_json(data)
    for table in tables(data):
        console.print(table)


def tables(data: dict[str, Any]) -> list[Table]:
    out = [jobs_table(data)]
    if data["params"]["names"]:
        out.append(params_table(data))
    if data["spec_differences"]:
        out.append(differences_table(data))
    if data["metrics"]:
        out.append(metrics_table(data))
    return out


def _table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("")
    for job in data["jobs"]:
        table.add_column(escape(f"#{job['id']} {job['name']}"), overflow="fold")
    return table


def jobs_table(data: dict[str, Any]) -> Table:
    table = _table("jobs", data)
    jobs = data["jobs"]
    rows = [
        ("state", [state_text(j["state"]) for j in jobs]),
        ("owner", [escape(j["owner"]) for j in jobs]),
        ("duration", [format_duration(j["duration"]) for j in jobs]),
        ("attempts", [str(j["attempts"]) for j in jobs]),
        ("resources", [format_placement(j) for j in jobs]),
        ("dataset", [escape(j["dataset"] or "-") for j in jobs]),
        ("runs in", [escape(_runs_in(j)) for j in jobs]),
        ("tags", [escape(" ".join(j["tags"])) or "-" for j in jobs]),
    ]
    for label, cells in rows:
        table.add_row(label, *cells)
    return table


def _runs_in(job: dict[str, Any]) -> str:
    what = job["image"] or ("a uv virtualenv" if job["requirements"] else "the server's Python")
    return f"{job['environment']}: {what}" if job["environment"] else what


def params_table(data: dict[str, Any]) -> Table:
    table = _table("parameters (differing in bold)", data)
    differ = set(data["params"]["differ"])
    for name in data["params"]["names"]:
        cells = [_value(j["params"].get(name)) for j in data["jobs"]]
        if name in differ:
            table.add_row(f"[bold yellow]{escape(name)}[/]", *(f"[bold yellow]{c}[/]" for c in cells))
        else:
            table.add_row(escape(name), *cells)
    return table


def differences_table(data: dict[str, Any]) -> Table:
    table = _table("spec differences", data)
    for d in data["spec_differences"]:
        table.add_row(escape(d["field"]), *(_value(v) for v in d["values"]))
    return table


def metrics_table(data: dict[str, Any]) -> Table:
    table = _table("metrics: last / best", data)
    for m in data["metrics"]:
        table.add_row(escape(f"{m['name']} ({m['best_mode']})"), *(_summary(s) for s in m["jobs"]))
    return table


def _summary(s: dict[str, Any] | None) -> str:
    if s is None:
        return "-"
    at = f" @{s['best_step']}" if s["best_step"] is not None else ""
    return f"{s['last']:.6g} / {s['best']:.6g}{at}"


def _value(v: Any) -> str:
    return escape(_text(v))


def _text(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    return str(v)
