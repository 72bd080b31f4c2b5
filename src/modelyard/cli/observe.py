"""Commands that read what a job produced: logs, metrics, download."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from modelyard.cli.connect import get_client
from modelyard.cli.follow import follow_log, print_log
from modelyard.cli.jobs import JobId, Json
from modelyard.cli.output import byte_progress, console, metrics_table, note, print_json
from modelyard.downloads import download_outputs
from modelyard.jobs.units import format_size


def logs(
    job_id: JobId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the attempt ends")] = False,
    attempt: Annotated[Optional[int], typer.Option(min=1, help="which attempt (default: the latest)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="line objects {n, t, stream, text, node}; one per line with -f")] = False,
    node: Annotated[Optional[int], typer.Option("--node", min=0, max=63,
                                                help="only this node rank's lines (a multi-node job)")] = None,
) -> None:
    """Print a job's log; the job's stderr lines go to stderr. A job on several nodes shows
    each line as [node R] LINE, or one node's lines with --node R.

    Example: modelyard logs -f 7 --node 1
    """
    with get_client() as client:
        if follow:
            follow_log(client, job_id, attempt=attempt, as_json=as_json, node=node)
        else:
            print_log(client, job_id, attempt=attempt, as_json=as_json, node=node)


def metrics(
    job_id: JobId,
    names: Annotated[Optional[str], typer.Option(help="only these metrics, comma-separated")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='{name: [{"value", "step", "epoch", "time"}]}')] = False,
) -> None:
    """Summarise every metric a job reported: points, last, min, max.

    Example: modelyard metrics 7 --names loss,accuracy
    """
    wanted = [n for n in (names or "").split(",") if n] or None
    with get_client() as client:
        data = client.metrics(job_id, names=wanted)
    if as_json:
        return print_json(data)
    if not data:
        note(f"job {job_id} has reported no metrics yet")
        return
    console.print(metrics_table(data))


def download(
    job_id: JobId,
    to: Annotated[Optional[Path], typer.Option("--to", help="folder to write into (default: ./job-ID)")] = None,
    attempt: Annotated[Optional[int], typer.Option(min=1, help="that attempt's outputs (default: the job's, "
                                                   "i.e. its latest attempt's that has any)")] = None,
    final: Annotated[bool, typer.Option("--final", help="only the job's model: the files it left in "
                                        "MODELYARD_OUTPUT_DIR/final/ (of the latest attempt that has one), "
                                        "written without the final/ folder")] = False,
    as_json: Json = False,
) -> None:
    """Download a job's outputs: its latest attempt's that has any, attempt N's, or only its model.

    Example: modelyard download 7 --final --to ./model
    """
    dest_dir = (to or Path(f"job-{job_id}")).resolve()
    with get_client() as client, byte_progress(f"job {job_id} outputs", enabled=not as_json) as progress:
        got = download_outputs(client, job_id, dest_dir, final=final, attempt=attempt, progress=progress)
    if as_json:
        return print_json(got)
    total = sum(f.get("size") or 0 for f in got["files"])
    note(f"{len(got['files'])} files, {format_size(total)} in {dest_dir}"
         + (f" (attempt {got['attempt']})" if got["attempt"] else ""))
