"""``modelyard notebook``: a JupyterLab console as a job, opened through the server (README "Notebook consoles")."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from modelyard.cli.connect import get_client
from modelyard.cli.jobs import Json
from modelyard.cli.options import parse_env, read_requirements
from modelyard.cli.output import note, print_json, state_text
from modelyard.client import Client
from modelyard.jobs.states import TERMINAL

ENDED = {s.value for s in TERMINAL}
POLL = 0.5  # seconds between two looks at a starting console


def notebook(
    gpus: Annotated[Optional[int], typer.Option(help="whole GPUs")] = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPU cores")] = None,
    memory: Annotated[Optional[str], typer.Option(help="memory to reserve, e.g. 8G")] = None,
    image: Annotated[Optional[str], typer.Option(metavar="REF", help="run JupyterLab in a container of this image (it must have jupyterlab and modelyard)")] = None,
    requirements: Annotated[Optional[Path], typer.Option(metavar="FILE", help="in a uv virtualenv of this requirements file (list jupyterlab and modelyard in it)")] = None,
    environment: Annotated[Optional[str], typer.Option(metavar="NAME", help="a named environment (modelyard environment ls)")] = None,
    dataset: Annotated[Optional[str], typer.Option(metavar="NAME[:VERSION]", help="materialised in MODELYARD_DATA_DIR for the notebooks")] = None,
    env: Annotated[Optional[list[str]], typer.Option("--env", "-e", metavar="K=V", help="an environment variable of the kernels (repeatable)")] = None,
    idle_timeout: Annotated[str, typer.Option(help="end the console after this long with no activity, e.g. 1h, 30m")] = "1h",
    name: Annotated[Optional[str], typer.Option(help="a name to find the job by")] = None,
    max_runtime: Annotated[Optional[str], typer.Option(help="stop it after this long whatever it does, e.g. 8h")] = None,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", metavar="TAG", help="a tag (repeatable)")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="print the link and return at once, without waiting for JupyterLab")] = False,
    as_json: Json = False,
) -> None:
    """Start JupyterLab as a job and print its link, which its owner opens signed in to the web UI.

    Notebooks live in the job's outputs (notebooks/), synced while it runs and at its end.

    After --idle-timeout with no activity its kernels stop, then it does (the job succeeds).

    In a cell MODELYARD_URL and MODELYARD_TOKEN are set: modelyard.submit(...) and the CLI queue jobs as you.

    Example: modelyard notebook --gpus 1 --dataset digits --idle-timeout 30m
    """
    resources = {k: v for k, v in (("gpus", gpus), ("cpus", cpus), ("memory", memory)) if v is not None}
    given: dict[str, Any] = {
        "name": name, "image": image, "environment": environment, "dataset": dataset, "max_runtime": max_runtime,
        "requirements": read_requirements(requirements) if requirements else None,
        "env": parse_env(env) or None, "tags": tag or None, "resources": resources or None,
    }
    spec = {k: v for k, v in given.items() if v is not None}
    with get_client() as client:
        job = client.create_console(spec, idle_timeout=idle_timeout)
        link = f"{client.url}/ui/jobs/{job['id']}/lab/lab"
        note(f"console job {job['id']} ({job['name']}): {state_text(job['state'])}")
        status = client.console_status(job["id"]) if detach else _wait_ready(client, job["id"])
    if as_json:
        return print_json({**status, "url": link})
    print(link)


def _wait_ready(client: Client, job_id: int) -> dict[str, Any]:
    """Until JupyterLab answers; a console that ends first is an error with the job's message."""
    last = ""
    while True:
        status = client.console_status(job_id)
        if status["ready"]:
            return status
        if status["state"] != last:
            last = status["state"]
            note(f"console job {job_id}: {state_text(last)}")
        if last in ENDED:
            message = client.get_job(job_id).get("message") or ""
            note(f"console job {job_id} ended ({last}) before JupyterLab answered. {message}")
            raise typer.Exit(1)
        time.sleep(POLL)
