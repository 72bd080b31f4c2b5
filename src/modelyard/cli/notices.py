"""What you hear of your jobs, and how: ``notices``, ``profile``, ``notify show|set``."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from modelyard.cli.connect import get_client
from modelyard.cli.errors import fail
from modelyard.cli.jobs import Json
from modelyard.cli.output import console, note, print_json

notify_app = typer.Typer(help="Which job events reach you, and how (notice, email, webhook).", no_args_is_help=True)


def notices(
    unread: Annotated[bool, typer.Option("--unread", help="only the ones not read yet")] = False,
    mark_read: Annotated[bool, typer.Option("--mark-read", help="then mark all your notices read")] = False,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
    as_json: Json = False,
) -> None:
    """List your notices (a job of yours started, ended...), newest first; unread ones are bold.

    Example: modelyard notices --unread --mark-read
    """
    with get_client() as client:
        listing = client.notices(unread=unread, limit=limit)
        if mark_read:
            client.read_all_notices()
    if as_json:
        return print_json(listing)
    table = Table("id", "when", "job", "notice", box=None)
    for n in listing["notices"]:
        style = None if n["read"] else "bold"
        when = datetime.fromtimestamp(n["created_at"]).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(n["id"]), when, str(n["job_id"] or "-"), n["title"] + (f": {n['body']}" if n["body"] else ""),
                      style=style)
    console.print(table)
    note(f"{listing['unread']} unread" + (" (now marked read)" if mark_read and listing["unread"] else ""))


def profile(
    email: Annotated[Optional[str], typer.Option(metavar="ADDR", help="where your jobs' emails go")] = None,
    no_email: Annotated[bool, typer.Option("--no-email", help="send no more emails")] = False,
    user: Annotated[Optional[str], typer.Option(metavar="NAME", help="another user's email (admins)")] = None,
    as_json: Json = False,
) -> None:
    """Show your profile (name, email, the channels of each job event); --email ADDR sets the email.

    Example: modelyard profile --email ann@example.com
    """
    if email is not None and no_email:
        raise fail("give --email ADDR or --no-email, not both")
    with get_client() as client:
        if email is not None or no_email:
            data = client.update_profile(email=None if no_email else email, user=user)
        else:
            data = client.profile(user=user)
    if as_json:
        return print_json(data)
    print(f"name:  {data['name']}")
    print(f"email: {data['email'] or '-'}" + ("" if data["email_enabled"] else "  (this server sends no email)"))
    _choices_table(data)


def _choices_table(data: dict[str, Any]) -> None:
    table = Table("event", *data["channels"], box=None)
    for event in data["events"]:
        table.add_row(event, *("✔" if c in data["notify"][event] else "-" for c in data["channels"]))
    console.print(table)


@notify_app.command("show")
def show(as_json: Json = False) -> None:
    """Show, per job event, the channels it reaches you by.

    Example: modelyard notify show
    """
    with get_client() as client:
        data = client.profile()
    if as_json:
        return print_json(data["notify"])
    _choices_table(data)


@notify_app.command("set")
def set_channels(
    event: Annotated[str, typer.Argument(help="started, succeeded, failed, stopped, timed_out or lost")],
    channels: Annotated[str, typer.Argument(help="comma-separated: notice, email, webhook; or none")],
    as_json: Json = False,
) -> None:
    """Choose how one job event reaches you (the others keep theirs).

    webhook: your jobs' own --webhook URLs, for jobs that name no --webhook-event.

    Example: modelyard notify set started notice,webhook
    """
    names = [] if channels.strip().lower() == "none" else [c.strip() for c in channels.split(",") if c.strip()]
    with get_client() as client:
        data = client.update_profile(notify={event: names})
    if as_json:
        return print_json(data["notify"])
    note(f"{event}: {', '.join(data['notify'][event]) or 'none'}")
