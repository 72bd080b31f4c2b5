"""Your API tokens and webhook secret: ``token create|ls|revoke`` and ``webhook-secret``."""
from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from modelyard.cli.connect import get_client
from modelyard.cli.errors import fail
from modelyard.cli.jobs import Json
from modelyard.cli.output import console, note, print_json
from modelyard.jobs.units import parse_duration

token_app = typer.Typer(help="Create, list and revoke your API tokens.", no_args_is_help=True)


def _expires_in(text: str | None) -> float | None:
    if text is None:
        return None
    if text.strip().lower() == "never":
        return 0
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise fail(f"--expires: {exc} (or 'never')") from None
    if seconds <= 0:
        raise fail("--expires: must be more than 0 (or 'never')")
    return seconds


@token_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="what the token is for, shown in `token ls`")] = "",
    expires: Annotated[Optional[str], typer.Option(metavar="DURATION",
                                                   help="e.g. 30d, 12h, or never (default: the server's, 90d)")] = None,
    as_json: Json = False,
) -> None:
    """Create an API token for yourself and print it (shown once; use it as MODELYARD_TOKEN).

    Example: modelyard token create --name laptop --expires 30d
    """
    with get_client() as client:
        made = client.create_token(name=name, expires_in=_expires_in(expires))
    if as_json:
        return print_json(made)
    note(f"token {made['id']} ({made['prefix']}…) expires {made['expires_at'] or 'never'}")
    print(made["token"])


@token_app.command("ls")
def ls(
    all_users: Annotated[bool, typer.Option("--all", help="every user's tokens (admins)")] = False,
    as_json: Json = False,
) -> None:
    """List your tokens: id, name, the token's first characters, when it expires.

    Example: modelyard token ls
    """
    with get_client() as client:
        listing = client.list_tokens(all_users=all_users)
    if as_json:
        return print_json(listing)
    console.print(tokens_table(listing["tokens"], owners=all_users))


def tokens_table(tokens: list[dict[str, Any]], *, owners: bool) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("ID", *(["OWNER"] if owners else []), "NAME", "PREFIX", "CREATED", "EXPIRES"):
        table.add_column(col)
    for t in tokens:
        expires = "never" if t["expires_at"] is None else t["expires_at"][:19].replace("T", " ")
        table.add_row(str(t["id"]), *([t["owner"]] if owners else []), t["name"] or "-",
                      f"{t['prefix']}…" if t["prefix"] else "(older token)", t["created_at"][:19].replace("T", " "),
                      expires + (" (expired)" if t["expired"] else ""))
    return table


@token_app.command("revoke")
def revoke(
    ref: Annotated[str, typer.Argument(metavar="ID|PREFIX", help="the token's id or prefix, as `token ls` shows")],
    as_json: Json = False,
) -> None:
    """Revoke a token: it is refused from now on.

    Example: modelyard token revoke my_AbC1x
    """
    with get_client() as client:
        revoked = client.revoke_token(ref)["revoked"]
    if as_json:
        return print_json(revoked)
    note(f"revoked token {revoked['id']} ({revoked['prefix'] or 'older token'}) of {revoked['owner']}")


def webhook_secret(
    rotate: Annotated[bool, typer.Option(help="replace it with a new one (receivers need the new one)")] = False,
    as_json: Json = False,
) -> None:
    """Print the secret your jobs' webhooks are signed with (X-Modelyard-Signature: sha256=HMAC of the body).

    Example: modelyard webhook-secret
    """
    with get_client() as client:
        secret = client.webhook_secret(rotate=rotate)
    if as_json:
        return print_json(secret)
    print(secret["secret"])
