"""``modelyard dataset``: create, ls, show, visibility, rm and download dataset versions.

A local SOURCE is streamed to a remote server as a tar (with a progress bar); the
embedded server, on this machine, reads the path itself. A SOURCE with ``://`` is
a URL the server reads (``s3://bucket/mnist``).
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from enum import Enum
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from modelyard.cli.connect import get_client
from modelyard.cli.jobs import Json
from modelyard.cli.options import invalid
from modelyard.cli.output import byte_progress, console, err_console, note, print_json, state_text
from modelyard.client import Client
from modelyard.downloads import inside
from modelyard.jobs.units import format_size

dataset_app = typer.Typer(help="Import, version, split and format datasets for jobs.", no_args_is_help=True)
Ref = Annotated[str, typer.Argument(metavar="NAME[:VERSION]", help="a dataset; NAME alone is its latest version")]
FILES_SHOWN = 20


class Visibility(str, Enum):
    private = "private"
    public = "public"


@dataset_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="the dataset's name; creating it again adds a version")],
    source: Annotated[str, typer.Argument(help="a local folder or file, or a URL the server reads (s3://...)")],
    split: Annotated[Optional[str], typer.Option(metavar="NAME=RATIO,...", help="e.g. train=0.8,val=0.2")] = None,
    seed: Annotated[int, typer.Option(min=0, help="seed of the split's shuffle")] = 0,
    fmt: Annotated[Optional[str], typer.Option("--format", help="files (default), npz, lmdb, tfrecord or webdataset")] = None,
    description: Annotated[Optional[str], typer.Option(help="a line about the data")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="the label column of a CSV/Parquet table (or npz key)")] = None,
    kind: Annotated[Optional[str], typer.Option(help="force the reader: folder, images, idx, npz, csv, parquet")] = None,
    data_key: Annotated[Optional[str], typer.Option(help="the data array of an .npz with several")] = None,
    visibility: Annotated[Optional[Visibility], typer.Option(
        help="private: only you and admins see it (a new name's default); public: every user may read it")] = None,
    as_json: Json = False,
) -> None:
    """Import SOURCE as a new immutable version of dataset NAME, split and formatted.

    Example: modelyard dataset create digits ./mnist --split train=0.8,val=0.2 --format npz
    """
    options: dict[str, Any] = {"split": split, "seed": seed, "fmt": fmt, "description": description,
                               "label_column": label_column, "kind": kind, "data_key": data_key,
                               "visibility": visibility.value if visibility else None}
    with get_client() as client:
        where = _where(client, source, show_progress=not as_json)
        with err_console.status(f"creating {name} from {source}: reading, splitting, formatting",
                                spinner="dots") if not as_json else nullcontext():
            version = client.create_dataset(name, **where, **options)
    if as_json:
        return print_json(version)
    what = "created" if version.get("new", True) else "unchanged: the same content is already"
    note(f"{what} {version['ref']} ({_splits(version)}; {version['format']}, {format_size(version['size'])})")
    print(version["ref"])


@dataset_app.command("ls")
def ls(as_json: Json = False) -> None:
    """List your datasets and the public ones, with their owner and latest version.

    Example: modelyard dataset ls
    """
    with get_client() as client:
        data = client.list_datasets()
    if as_json:
        return print_json(data)
    if not data["datasets"]:
        note("no datasets yet; create one with `modelyard dataset create NAME SOURCE`")
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "owner", "visibility", "latest", "versions", "format", "splits", "size", "created"):
        table.add_column(column)
    for d in data["datasets"]:
        v = d["latest"]
        table.add_row(d["name"], d.get("owner") or "-", d.get("visibility", ""), v["version"], str(d["versions"]),
                      v["format"], _splits(v), format_size(v["size"]), _when(v["created"]))
    console.print(table)


@dataset_app.command("show")
def show(ref: Ref, as_json: Json = False) -> None:
    """Show a version (or every version of NAME): splits and counts, format, size, files, and the jobs that used it.

    Example: modelyard dataset show digits:3f2a9c01b7d4
    """
    with get_client() as client:
        data = client.get_dataset(ref)
    if as_json:
        return print_json(data)
    if "owner" in data:
        note(f"{data['name']}: owner {data['owner'] or '-'}, {data['visibility']}")
    for i, version in enumerate(data.get("versions", [data])):
        if i:
            console.print()
        _print_version(version, files=":" in ref)


@dataset_app.command("visibility")
def visibility(
    name: Annotated[str, typer.Argument(help="the dataset")],
    to: Annotated[Visibility, typer.Argument(metavar="private|public", help="who may read it")],
    as_json: Json = False,
) -> None:
    """Make a dataset public (every user may read it and run jobs on it) or private (its owner and admins).
    Only its owner or an admin may.

    Example: modelyard dataset visibility digits public
    """
    with get_client() as client:
        data = client.set_dataset_visibility(name, to.value)
    if as_json:
        return print_json(data)
    note(f"{data['name']} is {data['visibility']} (owner {data['owner']})")


@dataset_app.command("rm")
def rm(ref: Ref, as_json: Json = False) -> None:
    """Remove a version, or every version of NAME; refused while a queued or running job uses one.

    Example: modelyard dataset rm digits:3f2a9c01b7d4
    """
    with get_client() as client:
        data = client.remove_dataset(ref)
    if as_json:
        return print_json(data)
    for v in data["removed"]:
        note(f"removed {v['ref']}")


@dataset_app.command("download")
def download(
    ref: Ref,
    to: Annotated[Optional[Path], typer.Option("--to", help="folder to write into (default: ./NAME-VERSION)")] = None,
    as_json: Json = False,
) -> None:
    """Download a version's files (one folder per split), as a job sees them in MODELYARD_DATA_DIR.

    Example: modelyard dataset download digits --to ./digits
    """
    with get_client() as client:
        version = version_of(client, ref)
        dest_dir = (to or Path(f"{version['name']}-{version['version']}")).resolve()
        fetch_version(client, version, dest_dir, show_progress=not as_json)
    if as_json:
        return print_json({"dir": str(dest_dir), **version})
    note(f"{len(version['files'])} files, {format_size(version['size'])} in {dest_dir}")


def fetch_version(client: Client, version: dict[str, Any], dest_dir: Path, *, show_progress: bool = True) -> None:
    """A version's files into ``dest_dir``, a folder per split, as MODELYARD_DATA_DIR holds them."""
    total, done_before = version["size"], 0
    with byte_progress(f"{version['ref']}", enabled=show_progress) as progress:
        for f in version["files"]:
            base = done_before
            client.download_dataset_file(version["name"], version["version"], f["path"],
                                         inside(dest_dir, f["path"]),
                                         progress=lambda done, _t: progress(base + done, total))
            done_before += f["size"]
    for split in version["splits"]:
        (dest_dir / split["name"]).mkdir(parents=True, exist_ok=True)  # an empty split is still a folder


# -- helpers ---------------------------------------------------------------------------------------


def _where(client: Client, source: str, *, show_progress: bool) -> dict[str, str]:
    """``source=`` for a URL or for the embedded server on this machine, else ``upload=`` after streaming it."""
    if "://" in source:
        return {"source": source}
    path = Path(source).expanduser()
    if not path.exists():
        raise invalid("source", f"{source}: no such file or folder")
    if client.embedded:
        return {"source": str(path.resolve())}
    with byte_progress(f"upload {source}", enabled=show_progress) as progress:
        return {"upload": client.upload_dataset_source(path, progress=progress)["upload"]}


def version_of(client: Client, ref: str) -> dict[str, Any]:
    data = client.get_dataset(ref)
    return data["versions"][0] if "versions" in data else data


def _print_version(v: dict[str, Any], *, files: bool) -> None:
    grid = Table.grid(padding=(0, 2))
    rows = [
        ("dataset", f"[bold]{v['ref']}[/]"), ("description", v.get("description") or ""),
        ("created", _when(v["created"])), ("source", f"{v['source']} ({v['source_kind']})"),
        ("format", v["format"]), ("size", f"{format_size(v['size'])} in {v['file_count']} files"),
        ("seed", str(v["seed"])), ("classes", ", ".join(v.get("classes") or [])[:200]),
    ]
    for key, value in rows:
        if value:
            grid.add_row(f"[bold]{key}[/]", value)
    console.print(grid)
    splits = Table(title="splits", box=None, header_style="bold", title_justify="left")
    for column in ("split", "ratio", "records"):
        splits.add_column(column, justify="left" if column == "split" else "right")
    for s in v["splits"]:
        splits.add_row(s["name"], "-" if s.get("ratio") is None else f"{s['ratio']:g}", str(s["count"]))
    console.print(splits)
    if files and v.get("files"):
        table = Table(title="files", box=None, header_style="bold", title_justify="left")
        table.add_column("path")
        table.add_column("size", justify="right")
        for f in v["files"][:FILES_SHOWN]:
            table.add_row(f["path"], format_size(f["size"]))
        console.print(table)
        if len(v["files"]) > FILES_SHOWN:
            note(f"... and {len(v['files']) - FILES_SHOWN} more files (--json lists them all)")
    jobs = v.get("jobs") or []
    if not jobs:
        console.print("[dim]no jobs have used this version[/]")
        return
    table = Table(title="jobs that used it", box=None, header_style="bold", title_justify="left")
    for column in ("id", "name", "owner", "state"):
        table.add_column(column)
    for j in jobs:
        table.add_row(str(j["id"]), j["name"], j["owner"], state_text(j["state"]))
    console.print(table)


def _splits(v: dict[str, Any]) -> str:
    return " · ".join(f"{s['name']} {s['count']}" for s in v["splits"])


def _when(iso: str) -> str:
    return iso.replace("T", " ").split(".")[0]
