"""Removing jobs and seeing the disk: ``rm``, ``admin removals``, ``admin disk``."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from modelyard.cli.connect import get_client
from modelyard.cli.errors import fail
from modelyard.cli.output import console, note, print_json
from modelyard.errors import ModelyardError
from modelyard.jobs.units import format_size

admin_app = typer.Typer(help="Server administration: removals and disk use (admins only).", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="print the API's JSON")]


def rm(
    job_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="the jobs to remove")],
    keep_final: Annotated[bool, typer.Option("--keep-final", help="keep each job's final/ (its model) and its row, "
                                             "marked removed")] = False,
    as_json: Json = False,
) -> None:
    """Remove ended jobs: their logs, metrics, outputs, run folders and code (unless another job shares it).

    Refused while a job is queued, starting, running or stopping: stop it first.

    Example: modelyard rm 7 8 --keep-final
    """
    done, failed = [], []
    with get_client() as client:
        for job_id in job_ids:
            try:
                done.append(client.remove_job(job_id, keep_final=keep_final))
            except ModelyardError as e:
                failed.append(f"job {job_id}: {e.message}")
    if as_json:
        print_json({"removed": done, "errors": failed})
    else:
        for r in done:
            kept = ", its final/ kept" if r["kept_final"] else ""
            note(f"job {r['job_id']} removed ({format_size(r['bytes'])}{kept})")
    if failed:
        raise fail("; ".join(failed))


@admin_app.command("removals")
def removals(
    reason: Annotated[Optional[str], typer.Option(help="only those of this reason: rm or retention")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many, newest first")] = 50,
    as_json: Json = False,
) -> None:
    """List what `rm` and the retention policy (MODELYARD_RETENTION) removed, newest first.

    Example: modelyard admin removals --reason retention
    """
    with get_client() as client:
        page = client.removals(limit=limit, reason=reason)
    if as_json:
        return print_json(page)
    if not page["removals"]:
        return note("nothing removed")
    table = Table("time", "job", "owner", "what", "size", "reason", "by", "detail")
    for r in page["removals"]:
        table.add_row(r["time"], str(r["job_id"]), r["owner"] or "-", r["what"], format_size(r["bytes"]),
                      r["reason"], r["actor"] or "(platform)", r["detail"])
    console.print(table)


@admin_app.command("disk")
def disk(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="the largest this many jobs")] = 20,
    refresh: Annotated[bool, typer.Option(help="measure now, not the figures of up to 30 s ago")] = False,
    as_json: Json = False,
) -> None:
    """Show the disk used: per user, the largest jobs, datasets, caches, run folders and the database.

    Example: modelyard admin disk --limit 10
    """
    with get_client() as client:
        d = client.disk(limit=limit, refresh=refresh)
    if as_json:
        return print_json(d)
    table = Table("what", "size")
    table.add_row("artifact store", format_size(d["store_bytes"]))
    for u in d["users"]:
        table.add_row(f"  user {u['user']}", format_size(u["bytes"]))
    for ds in d["datasets"]:
        table.add_row(f"  dataset {ds['name']}", format_size(ds["bytes"]))
    table.add_row("  code snapshots", format_size(d["snapshots_bytes"]))
    for c in d["caches"]:
        table.add_row(f"cache {c['name']}", format_size(c["bytes"]))
    table.add_row("run folders", format_size(d["run_folders_bytes"]))
    if d["database_bytes"] is not None:
        table.add_row("database", format_size(d["database_bytes"]))
    console.print(table)
    jobs = Table("job", "owner", "size", title=f"largest jobs ({len(d['jobs'])} of {d['jobs_total']})")
    for j in d["jobs"]:
        jobs.add_row(str(j["id"]), j["owner"] or "(removed)", format_size(j["bytes"]))
    console.print(jobs)
