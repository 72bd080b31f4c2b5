"""``modelyard secret``: set, ls and rm a user's stored secrets (README "Secrets").

A value is read from a prompt that does not echo it, or from stdin when stdin is
not a terminal (``printf %s "$TOKEN" | modelyard secret set HF_TOKEN``), never
from the command line, where ``ps`` and the shell's history would see it. It is
never shown again; jobs get it with ``submit --secret NAME``.
"""
from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from modelyard.cli.connect import get_client
from modelyard.cli.jobs import Json
from modelyard.cli.options import invalid
from modelyard.cli.output import console, note, print_json

secret_app = typer.Typer(help="Store secrets for your jobs; their values are never shown back.", no_args_is_help=True)
Name = Annotated[str, typer.Argument(metavar="NAME", help="the environment variable the job gets, e.g. WANDB_API_KEY")]


@secret_app.command("set")
def set_secret(name: Name, as_json: Json = False) -> None:
    """Store (or replace) a secret; the value comes from a hidden prompt, or from stdin.

    Example: modelyard secret set WANDB_API_KEY
    """
    value = _read_value(name)
    with get_client() as client:
        stored = client.set_secret(name, value)
    if as_json:
        return print_json(stored)
    note(f"stored secret {stored['name']}; give it to a job with --secret {stored['name']}")


@secret_app.command("ls")
def list_secrets(as_json: Json = False) -> None:
    """List your stored secrets: names and dates, never values.

    Example: modelyard secret ls
    """
    with get_client() as client:
        page = client.list_secrets()
    if as_json:
        return print_json(page)
    if not page["secrets"]:
        note("no stored secrets (modelyard secret set NAME)")
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "created", "updated"):
        table.add_column(column)
    for s in page["secrets"]:
        table.add_row(s["name"], s["created_at"], s["updated_at"])
    console.print(table)


@secret_app.command("rm")
def remove_secret(name: Name) -> None:
    """Remove a stored secret; queued jobs naming it then fail to start.

    Example: modelyard secret rm WANDB_API_KEY
    """
    with get_client() as client:
        client.remove_secret(name)
    note(f"removed secret {name}")


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = typer.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        # `echo VALUE |` adds one newline; more than that is the value's own
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise invalid("value", f"no value for {name}: type it at the prompt, or pipe it on stdin")
    return value
