"""The model registry, read only: ``models`` (one's registered models) and ``models show NAME`` (its
versions, aliases and source jobs). Registering and promoting are the MLflow client's
(README "MLflow model registry")."""
from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from modelyard.cli.connect import get_client
from modelyard.cli.jobs import Json
from modelyard.cli.output import console, note, print_json

models_app = typer.Typer()  # its help is the callback's docstring


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many, the most recently changed first")] = 50,
    as_json: Json = False,
) -> None:
    """List your registered models: latest version, aliases, when each last changed.

    Example: modelyard models; then modelyard models show digits
    """
    if ctx.invoked_subcommand is not None:
        return
    with get_client() as client:
        listing = client.list_models(limit=limit)
    if as_json:
        return print_json(listing)
    if not listing["models"]:
        note("no registered models: log_model(..., registered_model_name=NAME) in a job registers one")
        return
    table = Table(box=None)
    for head in ("name", "latest", "versions", "aliases", "updated", "description"):
        table.add_column(head)
    for m in listing["models"]:
        table.add_row(m["name"], f"v{m['latest_version']}" if m["latest_version"] else "-", str(m["version_count"]),
                      _aliases(m["aliases"]), _when(m["updated_at"]), (m["description"] or "")[:60])
    console.print(table)
    if listing["total"] > len(listing["models"]):
        note(f"{len(listing['models'])} of {listing['total']} models (--limit for more)")


@models_app.command("show")
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="the registered model's name")],
    owner: Annotated[Optional[str], typer.Option(metavar="USER", help="an admin: another user's model")] = None,
    as_json: Json = False,
) -> None:
    """A registered model's versions: aliases, the job each came from, stage, files.

    Example: modelyard models show digits
    """
    with get_client() as client:
        m = client.get_model(name, owner=owner)
    if as_json:
        return print_json(m)
    console.print(f"[bold]{m['name']}[/bold] ({m['owner']}): {m['version_count']} version"
                  f"{'' if m['version_count'] == 1 else 's'}, aliases: {_aliases(m['aliases']) or 'none'}",
                  highlight=False)
    if m["description"]:
        console.print(m["description"], highlight=False, markup=False)
    table = Table(box=None)
    for head in ("version", "aliases", "job", "stage", "created", "files"):
        table.add_column(head)
    for v in m["versions"]:
        table.add_row(f"v{v['version']}", ", ".join(v["aliases"]), str(v["job_id"] or "-"), v["stage"],
                      _when(v["created_at"]), str(v["file_count"]))
    console.print(table)


def _aliases(aliases: dict[str, Any]) -> str:
    return ", ".join(f"{a}=v{n}" for a, n in aliases.items())


def _when(iso: str | None) -> str:
    return iso.replace("T", " ").split(".")[0].removesuffix("Z") if iso else "-"
