"""Running and administering a server: ``server`` and ``user create``."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from modelyard.cli.connect import get_client
from modelyard.cli.jobs import Json
from modelyard.cli.output import note, print_json

user_app = typer.Typer(help="Manage users (admins only).", no_args_is_help=True)


def server(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8765,
    embedded: Annotated[bool, typer.Option(help="the per-user background server: 127.0.0.1, port in $MODELYARD_HOME/server.json")] = False,
) -> None:
    """Run the modelyard API server (and its scheduler) in the foreground.

    Example: modelyard server --host 0.0.0.0 --port 8765
    """
    # Imported here so that every other command starts without FastAPI and the store.
    from modelyard.server.app import serve

    serve(host=host, port=port, embedded=embedded)


@user_app.command("create")
def create_user(
    name: Annotated[str, typer.Argument(help="the new user's name")],
    admin: Annotated[bool, typer.Option(help="may see every job and create users")] = False,
    no_isolation: Annotated[bool, typer.Option(
        "--no-isolation", help="allow a non-admin user although this server has no MODELYARD_JOB_UIDS: "
        "their jobs run as the server's user and can read everything it can")] = False,
    email: Annotated[Optional[str], typer.Option(metavar="ADDR", help="where their jobs' emails go")] = None,
    as_json: Json = False,
) -> None:
    """Create a user and print their API token (shown once; give it to them as MODELYARD_TOKEN).

    The token expires after the server's MODELYARD_TOKEN_TTL (90 days unless set); the
    user makes more with `modelyard token create`.

    Example: modelyard user create bob --email bob@example.com
    """
    with get_client() as client:
        created = client.create_user(name, admin=admin, no_isolation=no_isolation, email=email)
    if as_json:
        return print_json(created)
    note(f"created user {created['user']['name']}" + (" (admin)" if created["user"].get("is_admin") else ""))
    print(created["token"])
