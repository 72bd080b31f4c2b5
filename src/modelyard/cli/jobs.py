"""Commands over existing jobs: jobs, show, stop, restart, clone, wait, tag."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from modelyard.cli.code import upload_workdir
from modelyard.cli.connect import get_client
from modelyard.cli.errors import fail
from modelyard.cli.follow import job_exit_code
from modelyard.cli.options import shape_command
from modelyard.cli.output import attempts_table, console, events_table, job_summary, jobs_table, note, print_json, state_text
from modelyard.client import is_final
from modelyard.jobs.states import JobState
from modelyard.jobs.units import parse_duration

JobId = Annotated[int, typer.Argument(metavar="ID", help="the job's id")]
Json = Annotated[bool, typer.Option("--json", help="print the API's JSON")]
EXIT_WAIT_TIMEOUT = 124  # as timeout(1) does


def jobs(
    state: Annotated[Optional[list[JobState]], typer.Option(help="only jobs in this state (repeatable: any)", case_sensitive=False)] = None,
    all_users: Annotated[bool, typer.Option("--all", help="every user's jobs (admins)")] = False,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", metavar="TAG", help="only jobs with this tag (repeatable: all)")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", metavar="NAME", help="show this parameter as a column (repeatable)")] = None,
    filter: Annotated[Optional[list[str]], typer.Option("--filter", metavar="EXPR", help="a parameter filter, e.g. 'lr>=0.01' or opt=adam; ops = != < <= > >= (repeatable: all)")] = None,
    owner: Annotated[Optional[str], typer.Option(metavar="USER", help="only this user's jobs (an admin sees anyone's)")] = None,
    dataset: Annotated[Optional[str], typer.Option(metavar="NAME[:VERSION]", help="only jobs that read this dataset")] = None,
    environment: Annotated[Optional[str], typer.Option(metavar="NAME", help="only jobs of this named environment")] = None,
    experiment: Annotated[Optional[str], typer.Option(metavar="NAME", help="only jobs whose run is in this MLflow experiment of their owner's (Default: in none)")] = None,
    since: Annotated[Optional[str], typer.Option(metavar="WHEN", help="created at or after: an ISO date (2026-12-01) or Unix seconds")] = None,
    until: Annotated[Optional[str], typer.Option(metavar="WHEN", help="created before: an ISO date or Unix seconds")] = None,
    sort: Annotated[Optional[str], typer.Option(metavar="KEY", help="id, created, name, state, owner or param:NAME; -KEY descending (default -id)")] = None,
    as_json: Json = False,
) -> None:
    """List jobs, newest first, filtered by state, tags, parameters, owner, dataset, environment, experiment or date.

    MLflow runs with no process (made by a script outside any job) are listed too, their resources
    shown as "MLflow run, no process".

    Example: modelyard jobs --tag baseline --param lr --filter 'lr>=0.01' --sort -param:lr
    """
    with get_client() as client:
        page = client.list_jobs(state=[s.value for s in state or ()], limit=limit, all_users=all_users, tags=tag,
                                filters=filter, owner=owner, dataset=dataset, environment=environment,
                                experiment=experiment, since=since, until=until, sort=sort)
    if as_json:
        return print_json(page)
    if not page["jobs"]:
        note("no jobs" + (f" in state {', '.join(s.value for s in state)}" if state else "")
             + (" matching" if tag or filter or owner or dataset or environment or experiment or since or until
                else ""))
        return
    console.print(jobs_table(page["jobs"], params=param or ()))
    if page.get("total", 0) > len(page["jobs"]):
        note(f"{len(page['jobs'])} of {page['total']} jobs (--limit to see more)")


def show(job_id: JobId, as_json: Json = False) -> None:
    """Show a job: its spec, every attempt with exit code and times, recent events and who asked for each.

    Example: modelyard show 7
    """
    with get_client() as client:
        job = client.get_job(job_id)
        events = client.job_events(job_id)["events"]
    if as_json:
        return print_json({**job, "events": events})
    console.print(job_summary(job))
    if job.get("attempts"):
        console.print(attempts_table(job["attempts"]))
    if events:
        console.print(events_table(events[-10:]))


def stop(job_id: JobId, as_json: Json = False) -> None:
    """Stop a job (SIGTERM, a grace period, then SIGKILL); its outputs are synced once more.

    Example: modelyard stop 7
    """
    with get_client() as client:
        job = client.stop_job(job_id)
    _print_job(job, as_json)


def restart(job_id: JobId, as_json: Json = False) -> None:
    """Run an ended job again, as a new attempt of the same job.

    Example: modelyard restart 7
    """
    with get_client() as client:
        job = client.restart_job(job_id)
    _print_job(job, as_json, f"attempt {job.get('attempt')} of ")


def clone(
    job_id: JobId,
    command: Annotated[Optional[list[str]], typer.Argument(metavar="[-- CMD...]", help="a new command")] = None,
    resume: Annotated[bool, typer.Option(help="start from this job's latest outputs (MODELYARD_RESUME_DIR)")] = False,
    code: Annotated[Optional[Path], typer.Option("--code", metavar="DIR", help="new code: snapshot DIR (. for the "
                                                 "current folder) as submit does; default: the job's own code")] = None,
    name: Annotated[Optional[str], typer.Option(help="the new job's name")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", metavar="NAME=VALUE", help="over the old job's parameters (repeatable)")] = None,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", metavar="TAG", help="a tag added to the old job's (repeatable)")] = None,
    as_json: Json = False,
) -> None:
    """Submit a new job like an old one (its parameters and tags too), optionally resuming from its
    outputs, with new code, a new command or new parameters.

    Example: modelyard clone 7 --resume --code . --param lr=0.001 -- python train.py --steps 3000000
    """
    with get_client() as client:
        snapshot = upload_workdir(client, code, show_progress=not as_json, field="code") if code else None
        job = client.clone_job(job_id, resume=resume, command=shape_command(command), name=name, snapshot=snapshot,
                               params=param, tags=tag)
    _print_job(job, as_json, "submitted ")


def wait(
    job_id: JobId,
    timeout: Annotated[Optional[str], typer.Option(help="give up after this long, e.g. 90s or 2h (exit 124)")] = None,
    as_json: Json = False,
) -> None:
    """Wait until a job ends; exit with its exit code (1 when it failed without one).

    Example: modelyard wait 7 --timeout 2h && echo trained
    """
    seconds = _duration(timeout)
    with get_client() as client:
        job = client.wait_job(job_id, timeout=seconds)
    if as_json:
        print_json(job)
    if not is_final(job):
        raise fail(f"job {job_id} is still {job['state']} after {timeout}", EXIT_WAIT_TIMEOUT)
    if not as_json:
        note(f"job {job_id} {state_text(job['state'])}" + (f": {job['message']}" if job.get("message") else ""))
    raise typer.Exit(job_exit_code(job))


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--timeout") from None


def _print_job(job: dict, as_json: bool, prefix: str = "") -> None:
    if as_json:
        return print_json(job)
    console.print(f"{prefix}job {job['id']} ({job.get('name') or ''}): {state_text(job['state'])}")


class TagAction(str, Enum):
    add = "add"
    rm = "rm"


def tag(
    job_id: JobId,
    action: Annotated[TagAction, typer.Argument(help="add or rm")],
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="the tags")],
    as_json: Json = False,
) -> None:
    """Add tags to a job, or remove them (yours, or any as an admin); prints its tags after.

    Example: modelyard tag 7 add baseline resnet
    """
    with get_client() as client:
        if action is TagAction.add:
            out = client.change_tags(job_id, add=tags)
        else:
            out = client.change_tags(job_id, remove=tags)
    if as_json:
        return print_json(out)
    console.print(f"job {job_id}: " + (" ".join(out["tags"]) or "no tags"))
