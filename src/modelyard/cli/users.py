"""``user list``, ``user quota``, ``user admin`` (admins) and ``usage`` (anyone's own): quotas and usage.

Registered on ``admin.user_app`` beside ``user create``; thin wrappers over the client.
"""
from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from modelyard.cli.admin import user_app
from modelyard.cli.connect import get_client
from modelyard.cli.jobs import Json
from modelyard.cli.output import console, note, print_json

CLEAR = ("none", "null", "-")


def _limit(value: str | None, key: str, *, whole: bool) -> Any:
    """A flag's value: a number, ``none`` to clear, or absent (None: unchanged)."""
    if value is None:
        return ...
    if value.strip().lower() in CLEAR:
        return None
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        raise typer.BadParameter(f"use {'a whole number' if whole else 'a number'} >= 0, or none to clear it",
                                 param_hint=f"--{key}") from None
    if number < 0:
        raise typer.BadParameter("use a number >= 0, or none to clear it", param_hint=f"--{key}")
    return number


def _show(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


def _quota_text(q: dict[str, Any]) -> str:
    return f"{_show(q.get('gpus'))} GPUs, {_show(q.get('cpus'))} CPUs, {_show(q.get('queued'))} queued"


def users_table(users: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("name", "admin", "GPUs", "CPUs", "queued", "GPU-h (fair share)"):
        table.add_column(column, justify="left" if column in ("name", "admin") else "right")
    for u in users:
        q, used = u["quota"], u["usage"]
        table.add_row(u["name"], "yes" if u["is_admin"] else "",
                      f"{used['gpus']} / {_show(q['gpus'])}", f"{used['cpus']:g} / {_show(q['cpus'])}",
                      f"{used['queued']} / {_show(q['queued'])}", f"{used['gpu_hours']:.1f}")
    return table


@user_app.command("list")
def list_users(as_json: Json = False) -> None:
    """List users with their quotas and usage.

    Each column is what their jobs use now over its quota ('-': none): running GPUs, CPUs,
    queued jobs; then their fair-share GPU-hours (decayed, MODELYARD_FAIRSHARE_HALFLIFE).

    Example: modelyard user list
    """
    with get_client() as client:
        users = client.list_users()
    if as_json:
        return print_json(users)
    console.print(users_table(users))


@user_app.command("quota")
def quota(
    name: Annotated[str, typer.Argument(help="the user")],
    gpus: Annotated[Optional[str], typer.Option(help="GPUs their running jobs may hold at once; none: clear")] = None,
    cpus: Annotated[Optional[str], typer.Option(help="CPUs their running jobs may hold at once; none: clear")] = None,
    queued: Annotated[Optional[str], typer.Option(help="jobs they may have queued; none: clear")] = None,
    as_json: Json = False,
) -> None:
    """Set a user's quotas (a job counts nodes x per-node ask); with no option, show them.

    A cleared quota falls back to the server's MODELYARD_DEFAULT_QUOTA, if set.

    Example: modelyard user quota alice --gpus 4 --cpus 16 --queued 20
    """
    changes = {k: v for k, v in (("gpus", _limit(gpus, "gpus", whole=True)), ("cpus", _limit(cpus, "cpus", whole=False)),
                                 ("queued", _limit(queued, "queued", whole=True))) if v is not ...}
    with get_client() as client:
        user = client.set_quota(name, **changes)
    if as_json:
        return print_json(user)
    note(f"{user['name']}: {_quota_text(user['quota'])}")


@user_app.command("admin")
def admin(
    name: Annotated[str, typer.Argument(help="the user")],
    on: Annotated[bool, typer.Option("--on/--off", help="make them an admin, or no longer one")] = True,
    as_json: Json = False,
) -> None:
    """Make a user an admin (--on) or a plain user (--off); the last admin stays one.

    Example: modelyard user admin bob --off
    """
    with get_client() as client:
        user = client.set_admin(name, on)
    if as_json:
        return print_json(user)
    note(f"{user['name']} is {'an admin' if user['is_admin'] else 'not an admin'}")


def usage(as_json: Json = False) -> None:
    """Show your own quota and what you use: running GPUs and CPUs, queued jobs, fair-share GPU-hours.

    Example: modelyard usage
    """
    with get_client() as client:
        me = client.my_usage()
    if as_json:
        return print_json(me)
    console.print(users_table([me]))
