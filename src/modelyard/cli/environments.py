"""``modelyard environment``: create, ls, show and rm named environments for ``submit --environment``.

A requirements FILE is read here and sent as its text, as ``submit --requirements`` does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from modelyard.cli.connect import get_client
from modelyard.cli.jobs import Json
from modelyard.cli.options import invalid, read_requirements
from modelyard.cli.output import console, note, print_json

environment_app = typer.Typer(help="Named images and requirements that jobs run in (submit --environment NAME).",
                              no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="the environment's name")]


@environment_app.command("create")
def create(
    name: Name,
    image: Annotated[Optional[str], typer.Option(metavar="REF", help="a container image its jobs run in")] = None,
    requirements: Annotated[Optional[Path], typer.Option(metavar="FILE", help="a requirements file: its jobs run in a uv virtualenv of it")] = None,
    description: Annotated[str, typer.Option(metavar="TEXT", help="a line about it, shown in ls and the web form")] = "",
    as_json: Json = False,
) -> None:
    """Create a named environment from an image or a requirements file (an admin's is offered to every user).

    Example: modelyard environment create torch24 --requirements requirements.txt --description "PyTorch 2.4, CPU"
    """
    if (image is None) == (requirements is None):
        raise invalid("image", "give exactly one of --image and --requirements")
    text = read_requirements(requirements) if requirements else None
    with get_client() as client:
        env = client.create_environment(name, image=image, requirements=text, description=description)
    if as_json:
        return print_json(env)
    note(f"created environment {env['name']} ({_what(env)}); use it with `modelyard submit --environment {name}`")


@environment_app.command("ls")
def ls(as_json: Json = False) -> None:
    """List the environments you can use: your own and the admins'.

    Example: modelyard environment ls
    """
    with get_client() as client:
        data = client.list_environments()
    if as_json:
        return print_json(data)
    if not data["environments"]:
        note("no environments yet; create one with `modelyard environment create NAME --image REF`")
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "owner", "runs in", "description"):
        table.add_column(column)
    for e in data["environments"]:
        table.add_row(e["name"], e["owner"] + (" (shared)" if e["shared"] else ""), _what(e), e["description"])
    console.print(table)


@environment_app.command("show")
def show(name: Name, as_json: Json = False) -> None:
    """Show an environment, with its requirements in full.

    Example: modelyard environment show torch24
    """
    with get_client() as client:
        env = client.get_environment(name)
    if as_json:
        return print_json(env)
    for key in ("name", "owner", "description", "created_at"):
        console.print(f"[bold]{key}[/bold]: {env[key]}", highlight=False)
    if env["image"]:
        console.print(f"[bold]image[/bold]: {env['image']}", highlight=False)
    else:
        console.print("[bold]requirements[/bold]:", highlight=False)
        console.print(env["requirements"].rstrip("\n"), highlight=False, markup=False)


@environment_app.command("rm")
def rm(name: Name, as_json: Json = False) -> None:
    """Remove an environment (its owner or an admin); jobs submitted with it keep what they were given.

    Example: modelyard environment rm torch24
    """
    with get_client() as client:
        env = client.remove_environment(name)
    if as_json:
        return print_json(env)
    note(f"removed environment {env['name']} of {env['owner']}")


def _what(env: dict[str, Any]) -> str:
    if env["image"]:
        return f"image {env['image']}"
    lines = [ln for ln in env["requirements"].splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "-"))]
    return f"requirements: {', '.join(lines[:3])}{', ...' if len(lines) > 3 else ''}"
