"""Starting work: ``submit`` (snapshot the workdir, upload it (cli/code.py), create the job) and ``run --local``."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from modelyard.cli.code import upload_workdir
from modelyard.cli.connect import get_client
from modelyard.cli.follow import follow_job, job_exit_code
from modelyard.cli.jobs import Json
from modelyard.cli.options import (
    build_spec, load_job_file, notebook_args, parse_env, read_requirements, shape_command, spec_payload,
)
from modelyard.cli.output import byte_progress, note, print_json, state_text
from modelyard.config import Settings

Command = Annotated[Optional[list[str]], typer.Argument(metavar="-- CMD...", help="the command; one quoted argument is a shell string")]
Image = Annotated[Optional[str], typer.Option(metavar="REF", help="run the command in a container of this image (Podman or Docker)")]
Requirements = Annotated[Optional[Path], typer.Option(metavar="FILE", help="run the command in a uv virtualenv built from this requirements file")]
Env = Annotated[Optional[list[str]], typer.Option("--env", "-e", metavar="K=V", help="an environment variable (repeatable)")]
Param = Annotated[Optional[list[str]], typer.Option("--param", metavar="NAME=VALUE", help="a parameter (repeatable): in MODELYARD_PARAMS, and in place of {NAME} in the command")]
Tag = Annotated[Optional[list[str]], typer.Option("--tag", metavar="TAG", help="a tag to find the job by (repeatable)")]
MetricPattern = Annotated[Optional[list[str]], typer.Option("--metric-pattern", metavar="REGEX", help="metrics from printed lines: a regex with named groups, e.g. 'loss=(?P<loss>[0-9.]+)', or a preset: keras, hf-trainer, pytorch-examples, lightning (repeatable)")]
NprocPerNode = Annotated[Optional[int], typer.Option("--nproc-per-node", metavar="K", help="processes per node, for torchrun's LOCAL_WORLD_SIZE (default: the GPUs per node, or 1)")]


def submit(
    command: Command = None,
    name: Annotated[Optional[str], typer.Option(help="a name to find the job by")] = None,
    gpus: Annotated[Optional[int], typer.Option(help="whole GPUs")] = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPU cores")] = None,
    memory: Annotated[Optional[str], typer.Option(help="memory to reserve, e.g. 8G")] = None,
    nodes: Annotated[Optional[int], typer.Option(metavar="N", help="spread the job over N nodes of a cluster, each holding --gpus/--cpus/--memory")] = None,
    nproc_per_node: NprocPerNode = None,
    node_label: Annotated[Optional[list[str]], typer.Option("--node-label", metavar="KEY=VALUE", help="run only on nodes with this label, e.g. gpu=h100 (repeatable: all must match)")] = None,
    workdir: Annotated[Optional[Path], typer.Option(help="folder to snapshot (default: .)")] = None,
    env: Env = None,
    param: Param = None,
    tag: Tag = None,
    metric_pattern: MetricPattern = None,
    secret: Annotated[Optional[list[str]], typer.Option(metavar="NAME[=VALUE]", help="an environment variable shown as *** everywhere: NAME=VALUE, or NAME for your stored secret (modelyard secret set NAME); repeatable")] = None,
    priority: Annotated[Optional[int], typer.Option(help="higher runs first (-1000..1000)")] = None,
    max_runtime: Annotated[Optional[str], typer.Option(help="stop after this long, e.g. 72h")] = None,
    sync_interval: Annotated[Optional[str], typer.Option(help="copy outputs every, e.g. 10m")] = None,
    retries: Annotated[Optional[int], typer.Option(help="new attempts after a failure")] = None,
    webhook: Annotated[Optional[list[str]], typer.Option(metavar="URL", help="POSTed the final state (repeatable)")] = None,
    webhook_event: Annotated[Optional[list[str]], typer.Option(metavar="EVENT", help="POST the webhooks on this event instead: started, succeeded, failed, stopped, timed_out, lost (repeatable)")] = None,
    dataset: Annotated[Optional[str], typer.Option(metavar="NAME[:VERSION]", help="materialised for the job in MODELYARD_DATA_DIR (NAME: its latest version, pinned at submit)")] = None,
    image: Image = None,
    requirements: Requirements = None,
    environment: Annotated[Optional[str], typer.Option(metavar="NAME", help="a named environment (modelyard environment ls)")] = None,
    experiment: Annotated[Optional[str], typer.Option(metavar="NAME", help="the MLflow experiment of yours the job's run starts in (created if missing; MLFLOW_EXPERIMENT_ID in its env)")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="a job YAML file; flags override it")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="print the log until the job ends; exit with its code")] = False,
    as_json: Json = False,
) -> None:
    """Snapshot the working folder (minus .gitignore'd files), upload it and queue a job.

    --gpus, --cpus and --memory are per node: --nodes 2 --gpus 8 holds 8 GPUs on each of two nodes.

    --param NAME=VALUE is recorded with the job (modelyard jobs --param NAME) and fills in {NAME} in the command.

    A command that is one .ipynb file runs that notebook with papermill; -p NAME VALUE after it (papermill's spelling) are parameters, as --param NAME=VALUE before it (README "Notebooks as jobs").

    Example: modelyard submit --gpus 1 --image pytorch/pytorch:2.4.0 --dataset digits --param lr=0.01 --tag baseline -- python train.py --lr {lr}

    Example: modelyard submit --cpus 2 train.ipynb -p lr 0.1 -p epochs 3
    """
    command, param = notebook_args(command, param)
    overrides: dict[str, Any] = {
        "command": shape_command(command), "name": name, "gpus": gpus, "cpus": cpus, "memory": memory,
        "workdir": str(workdir) if workdir else None, "env": parse_env(env) or None, "secrets": secret or None,
        "params": param or None, "tags": tag or None, "metric_patterns": metric_pattern or None,
        "priority": priority, "nodes": nodes, "nproc_per_node": nproc_per_node, "node_labels": node_label or None,
        "max_runtime": max_runtime, "sync_interval": sync_interval, "retries": retries, "webhooks": webhook or None,
        "webhook_events": webhook_event or None,
        "dataset": dataset, "image": image, "environment": environment, "experiment": experiment,
        "requirements": read_requirements(requirements) if requirements else None,
    }
    spec = build_spec(load_job_file(file), overrides)
    with get_client() as client:
        snapshot = upload_workdir(client, Path(spec.workdir or "."), show_progress=not as_json)
        job = client.submit_job(spec_payload(spec), snapshot=snapshot)
        if as_json and not follow:
            return print_json(job)
        note(f"submitted job {job['id']} ({job['name']}): {state_text(job['state'])}")
        if not follow:
            if not as_json:
                print(job["id"])
            return
        final = follow_job(client, job["id"], out=sys.stderr if as_json else None)
    if as_json:
        print_json(final)
    raise typer.Exit(job_exit_code(final))


def run(
    command: Command = None,
    local: Annotated[bool, typer.Option("--local", help="run here, in the foreground (required)")] = False,
    gpus: Annotated[Optional[str], typer.Option(metavar="0,1", help="GPU indices the job may see")] = None,
    env: Env = None,
    param: Param = None,
    metric_pattern: MetricPattern = None,
    max_runtime: Annotated[Optional[str], typer.Option(help="stop after this long, e.g. 2h")] = None,
    dataset: Annotated[Optional[str], typer.Option(metavar="NAME[:VERSION]", help="in MODELYARD_DATA_DIR, as a job gets it (NAME: its latest version)")] = None,
    image: Image = None,
    requirements: Requirements = None,
    nodes: Annotated[int, typer.Option(metavar="1", help="run --local is one node: only 1 (submit to a cluster for more)")] = 1,
    nproc_per_node: NprocPerNode = None,
) -> None:
    """Run a command in the foreground exactly as a job would run (same folders and variables).

    The current folder is snapshotted into $MODELYARD_HOME/runs/local-TIME/code and run
    there; MODELYARD_OUTPUT_DIR is that run's output/ folder. With --dataset the version is
    materialised first: from this machine's store into the dataset cache jobs share, or,
    with MODELYARD_URL set, downloaded from that server into the run's data/ folder.
    With --image it runs in a container of that image, at the paths a job's container has;
    with --requirements, in the uv virtualenv a job would get, from this machine's cache.

    A command that is one .ipynb file (and -p NAME VALUE after it) runs that notebook with papermill, as a job would; the executed notebook is written to output/ as it runs.

    Example: modelyard run --local --dataset digits -- python train.py --epochs 1

    Example: modelyard run --local train.ipynb -p lr 0.1
    """
    if not local:
        raise typer.BadParameter("only --local is supported; use `modelyard submit` to queue a job", param_hint="--local")
    if nodes != 1:
        raise typer.BadParameter("run --local runs on this machine, one node; submit to a cluster "
                                 "(MODELYARD_EXECUTOR=ray) for more", param_hint="--nodes")
    # The supervisor (and the storage it snapshots with) is only needed by this command.
    from modelyard.supervisor import run_local

    from modelyard.jobs.launch import Distributed
    from modelyard.jobs.params import command_argv, params_env
    from modelyard.scheduler.launch import environment_for

    command, param = notebook_args(command, param)
    spec = build_spec(None, {"command": shape_command(command), "env": parse_env(env) or None, "max_runtime": max_runtime,
                             "params": param or None, "metric_patterns": metric_pattern or None,
                             "requirements": read_requirements(requirements) if requirements else None,
                             "image": image, "nproc_per_node": nproc_per_node})
    gpu_list = _gpu_list(gpus)
    settings = Settings.from_env()
    run_dir = settings.runs_dir / time.strftime("local-%Y%m%d-%H%M%S")
    data_dir = _local_dataset(dataset, settings, run_dir) if dataset else None
    with byte_progress("snapshot .", close_when_done=True) as progress:
        outcome = run_local(
            command_argv(spec.argv(), spec.params), workdir=Path.cwd(), run_dir=run_dir,
            env={**spec.env, **params_env(spec.params)}, gpus=gpu_list,
            # as the platform would: one process per GPU it may see, unless told
            distributed=Distributed(nproc_per_node=spec.nproc_per_node or max(len(gpu_list), 1)),
            max_runtime=spec.max_runtime, stop_grace=settings.stop_grace,
            max_snapshot_bytes=settings.max_snapshot_bytes, snapshot_progress=progress, data_dir=data_dir,
            environment=environment_for(settings, image=spec.image, requirements=spec.requirements),
            metric_patterns=spec.metric_patterns,
        )
    note(f"outputs in {run_dir / 'output'}")
    raise typer.Exit(outcome.shell_exit_code)


def _local_dataset(ref: str, settings: Settings, run_dir: Path) -> Path:
    """The folder MODELYARD_DATA_DIR names for a ``run --local --dataset ref``."""
    if not os.environ.get("MODELYARD_URL"):
        # the embedded server's store is on this machine: the verified cache jobs here share
        from modelyard.datasets import StoreIndex, materialise
        from modelyard.scheduler.launch import dataset_cache_dir
        from modelyard.artifacts import ArtifactStore

        store = ArtifactStore(settings.storage_url)
        with byte_progress(f"dataset {ref}", close_when_done=True) as progress:
            folder = materialise(store, ref, dataset_cache_dir(settings), index=StoreIndex(store), progress=progress)
    else:
        from modelyard.cli.datasets import fetch_version, version_of

        folder = run_dir / "data"
        with get_client() as client:
            fetch_version(client, version_of(client, ref), folder)
    note(f"dataset {ref}: MODELYARD_DATA_DIR={folder}")
    return folder


def _gpu_list(text: str | None) -> list[int]:
    try:
        return [int(g) for g in (text or "").split(",") if g.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list of GPU indices like 0,1", param_hint="--gpus") from None
