"""Commands over existing jobs: jobs, show, stop, restart, clone, wait."""
from __future__ import annotations

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
    state: Annotated[Optional[JobState], typer.Option(help="only jobs in this state", case_sensitive=False)] = None,
    all_users: Annotated[bool, typer.Option("--all", help="every user's jobs (admins)")] = False,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
    as_json: Json = False,
) -> None:
    """List jobs, newest first.

    Example: modelyard jobs --state running
    """
    with get_client() as client:
        page = client.list_jobs(state=state.value if state else None, limit=limit, all_users=all_users)
    if as_json:
        return print_json(page)
    if not page["jobs"]:
        note("no jobs" + (f" in state {state.value}" if state else ""))
        return
    console.print(jobs_table(page["jobs"]))
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
    as_json: Json = False,
) -> None:
    """Submit a new job like an old one, optionally resuming from its outputs, with new code or a new command.

    Example: modelyard clone 7 --resume --code . -- python train.py --steps 3000000
    """
    with get_client() as client:
        snapshot = upload_workdir(client, code, show_progress=not as_json, field="code") if code else None
        job = client.clone_job(job_id, resume=resume, command=shape_command(command), name=name, snapshot=snapshot)
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
