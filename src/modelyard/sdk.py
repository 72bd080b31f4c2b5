"""The Python SDK: submit and watch jobs from a notebook or a script (README "The Python SDK").

    modelyard.connect(url=None, token=None) -> Client   the server later calls use by default
    modelyard.submit(command, workdir=".", ...) -> Job   snapshot and queue, as ``modelyard submit`` does
    modelyard.job(id) -> Job
    modelyard.jobs(tag=..., state=..., ...) -> [Job]

Every call goes through client.py's one Client, and the snapshot and spec
through submission.py, as the CLI's do; so a failure is a ModelyardError
(a ClientError with the server's message for a reply), never an httpx error.
Waiting past a deadline raises :class:`JobTimeout`, a TimeoutError.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from modelyard.client import Client
from modelyard.downloads import download_outputs
from modelyard.joblog import LogLines
from modelyard.jobs.states import JobState
from modelyard.submission import build_spec, invalid, read_requirements, shape_command, spec_payload, upload_workdir

METRIC_COLUMNS = ("name", "step", "epoch", "value", "time")

_default: Client | None = None
_default_lock = threading.Lock()


class JobTimeout(TimeoutError):
    """A job not ended when :meth:`Job.wait`'s timeout ran out; ``state`` is where it was then."""

    def __init__(self, job_id: int, state: JobState, timeout: float) -> None:
        super().__init__(f"job {job_id} is still {state.value} after {timeout:g}s")
        self.job_id, self.state, self.timeout = job_id, state, timeout


def connect(url: str | None = None, token: str | None = None) -> Client:
    """Talk to this server from now on (checked now: a bad URL or token fails here); the Client.

    Missing parts come from MODELYARD_URL and MODELYARD_TOKEN, and with no URL at all, the
    embedded local server, as the CLI finds it. Closing the client ends it: later calls
    without ``client=`` go to the environment's server again."""
    global _default
    env = {**os.environ, **({"MODELYARD_URL": url} if url else {}), **({"MODELYARD_TOKEN": token} if token else {})}
    client = Client.from_env(env)
    try:
        client.me()
    except BaseException:
        client.close()
        raise
    with _default_lock:
        # the one it replaces stays open: whoever kept it from an earlier connect may still use it
        _default = client
    return client


def default_client() -> Client:
    """The client :func:`connect` made while it is open, else one from the environment (made on first use)."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Client.from_env()
        return _default


def submit(
    command: str | Sequence[str], workdir: str | os.PathLike[str] = ".", *,
    name: str | None = None, gpus: int | None = None, cpus: float | None = None, memory: str | int | None = None,
    params: Mapping[str, str | int | float | bool] | None = None, tags: str | Iterable[str] | None = None,
    dataset: str | None = None, image: str | None = None, environment: str | None = None,
    requirements: str | os.PathLike[str] | Sequence[str] | None = None, env: Mapping[str, str] | None = None,
    secrets: Mapping[str, str | None] | Sequence[str] | None = None, max_runtime: str | float | None = None,
    retries: int | None = None, nodes: int | None = None, metric_patterns: str | Iterable[str] | None = None,
    priority: int | None = None, experiment: str | None = None, client: Client | None = None, **fields: Any,
) -> "Job":
    """Snapshot ``workdir`` (minus .gitignore'd files), upload it and queue ``command`` as a job.

    ``command``: an argv list, or one string run by the shell when it holds a space (else it is the
    program, as in the CLI); ``{NAME}`` in it is ``params[NAME]``.
    ``requirements``: a requirements file's path, or a list of requirement lines. ``secrets``:
    ``{NAME: value}``, or ``NAME`` (``None``) for your stored secret. ``experiment``: the MLflow
    experiment of yours its run starts in, created if missing. Other job fields
    (``sync_interval``, ``webhooks``, ``node_labels``, ...) go in as keywords."""
    overrides = {
        **fields, "command": _command(command), "name": name,
        "gpus": gpus, "cpus": cpus, "memory": memory, "params": dict(params) if params else None,
        "tags": _strings(tags), "dataset": dataset, "image": image, "environment": environment,
        "requirements": _requirements(requirements), "env": dict(env) if env else None,
        "secrets": _secrets(secrets), "max_runtime": max_runtime, "retries": retries, "nodes": nodes,
        "metric_patterns": _strings(metric_patterns), "priority": priority, "workdir": os.fspath(workdir),
        "experiment": experiment,
    }
    spec = build_spec(None, overrides)
    client = client or default_client()
    snapshot = upload_workdir(client, Path(workdir))
    return Job(client.submit_job(spec_payload(spec), snapshot=snapshot), client)


def job(job_id: int, *, client: Client | None = None) -> "Job":
    """The job ``job_id`` (yours, or anyone's for an admin)."""
    client = client or default_client()
    return Job(client.get_job(_job_id(job_id)), client)


def jobs(
    tag: str | Iterable[str] | None = None, state: str | Iterable[str] | None = None,
    param: str | Iterable[str] | Mapping[str, Any] | None = None, owner: str | None = None,
    since: str | float | date | None = None, limit: int = 50, *, all_users: bool = False,
    client: Client | None = None,
) -> list["Job"]:
    """Your jobs, newest first: with every tag in ``tag``, in any state in ``state``, matching every
    parameter filter in ``param`` (``"lr>=0.01"``, or ``{"opt": "adam"}`` for equality), of ``owner``,
    created at or after ``since`` (an ISO date, Unix seconds, a date or datetime); at most ``limit``."""
    client = client or default_client()
    page = client.list_jobs(tags=_strings(tag), state=_strings(state), filters=_filters(param), owner=owner,
                            since=_since(since), limit=limit, all_users=all_users)
    return [Job(data, client) for data in page["jobs"]]


class Job:
    """A job on the server. ``state`` is asked afresh on every read; the other fields are as of
    the last :meth:`refresh` (or whatever call last brought the job back)."""

    def __init__(self, data: Mapping[str, Any], client: Client) -> None:
        self._data = dict(data)
        self.client = client

    @property
    def id(self) -> int:
        return self._data["id"]

    @property
    def name(self) -> str:
        return self._data.get("name") or ""

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._data.get("params") or {})

    @property
    def tags(self) -> list[str]:
        return list(self._data.get("tags") or [])

    @property
    def data(self) -> dict[str, Any]:
        """The job as the API last gave it (``GET /api/v1/jobs/ID``)."""
        return dict(self._data)

    @property
    def state(self) -> JobState:
        return JobState(self.refresh()._data["state"])

    def refresh(self) -> "Job":
        self._data = self.client.get_job(self.id)
        return self

    def wait(self, timeout: float | None = None, poll: float | None = None) -> JobState:
        """Wait until the job ends; its final state. ``poll``: ask every ``poll`` seconds instead of
        listening to the server's event stream (for a proxy that holds streams back).

        Raises :class:`JobTimeout` when ``timeout`` seconds pass first."""
        if poll is None:
            self._data = self.client.wait_job(self.id, timeout=timeout)
        else:
            self._poll(timeout, poll)
        state = JobState(self._data["state"])
        if not state.is_terminal():
            raise JobTimeout(self.id, state, timeout or 0.0)
        return state

    def _poll(self, timeout: float | None, poll: float) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not JobState(self.refresh()._data["state"]).is_terminal():
            if deadline is not None and time.monotonic() >= deadline:
                return
            left = poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic()))
            time.sleep(left)

    def logs(self, follow: bool = False, *, attempt: int | None = None) -> Iterator[str]:
        """The log's lines (the job's stdout and stderr as it printed them), of its latest attempt or
        ``attempt``; ``follow``: as they come, until the job ends (every retry's and restart's too)."""
        lines = LogLines(self.client, self.id, attempt=attempt, follow=follow, every_attempt=follow and attempt is None)
        for line in lines:
            yield line["text"]
        if lines.job is not None:
            self._data = lines.job

    def metrics(self, names: str | Iterable[str] | None = None) -> Any:
        """Every point of every metric (or of ``names``): a pandas DataFrame with columns name, step,
        epoch, value, time (a UTC datetime) when pandas is installed, else a dict of those columns as
        lists (time in Unix seconds)."""
        series = self.client.metrics(self.id, names=_strings(names), columns=True)
        return metric_table(series)

    def outputs(self, attempt: int | None = None) -> list[dict[str, Any]]:
        """The output files, ``{"path", "size", "mtime", "final"}`` each: of the latest attempt that
        has any, or of ``attempt``."""
        return self.client.list_outputs(self.id, attempt=attempt)["files"]

    def download(self, dest: str | os.PathLike[str] = ".", final: bool = False, attempt: int | None = None) -> Path:
        """Write the outputs (``final``: only the model the job left in final/, without that folder)
        into the folder ``dest``; that folder."""
        got = download_outputs(self.client, self.id, Path(dest), final=final, attempt=attempt)
        return Path(got["dir"])

    def stop(self) -> "Job":
        """Ask the job to stop (SIGTERM, a grace period, then SIGKILL); :meth:`wait` sees it end."""
        self._data = self.client.stop_job(self.id)
        return self

    def restart(self) -> "Job":
        """Run the ended job again, as a new attempt of the same job."""
        self._data = self.client.restart_job(self.id)
        return self

    def tag(self, *add: str, remove: str | Iterable[str] = ()) -> list[str]:
        """Add the tags ``add`` and remove those in ``remove``; the job's tags after."""
        out = self.client.change_tags(self.id, add=list(add), remove=_strings(remove) or [])
        self._data["tags"] = out["tags"]
        return list(out["tags"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other.client.url == self.client.url

    def __hash__(self) -> int:
        return hash((self.client.url, self.id))

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.name!r} {self._data.get('state')}>"


def metric_table(series: Mapping[str, Mapping[str, Sequence[Any]]]) -> Any:
    """The API's columnar series as one long table (see :meth:`Job.metrics`)."""
    table: dict[str, list[Any]] = {c: [] for c in METRIC_COLUMNS}
    for name, cols in series.items():
        table["name"].extend([name] * len(cols["value"]))
        for c in METRIC_COLUMNS[1:]:
            table[c].extend(cols[c])
    try:
        import pandas as pd
    except ImportError:
        return table
    return pd.DataFrame({
        "name": pd.Series(table["name"], dtype="string"),
        "step": pd.array(table["step"], dtype="Int64"), "epoch": pd.array(table["epoch"], dtype="Int64"),
        "value": pd.Series(table["value"], dtype="float64"),
        "time": pd.to_datetime(pd.Series(table["time"], dtype="float64"), unit="s", utc=True),
    })


def _job_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid("job_id", f"{value!r} is not a job id (a whole number from 1)")
    return value


def _command(value: Any) -> str | list[str]:
    """As the CLI takes it (``shape_command``): one string with whitespace is run by the shell."""
    if isinstance(value, (str, os.PathLike)):
        return shape_command([os.fspath(value)])  # type: ignore[return-value]
    if isinstance(value, Sequence) and all(isinstance(v, (str, os.PathLike)) for v in value):
        if not value:
            raise invalid("command", "the command is empty")
        return shape_command([os.fspath(v) for v in value])  # type: ignore[return-value]
    raise invalid("command", f"{value!r} is not a command: give a shell string or a list of strings")


def _strings(value: str | Iterable[str] | None) -> list[str] | None:
    """One string or several (a str Enum as its value: a JobState); None when none."""
    if value is None:
        return None
    out = [_text(v) for v in ([value] if isinstance(value, str) else value)]
    return out or None


def _text(value: Any) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


def _requirements(value: str | os.PathLike[str] | Sequence[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return read_requirements(Path(value))
    return "".join(f"{line}\n" for line in value)


def _secrets(value: Mapping[str, str | None] | Sequence[str] | None) -> Any:
    if value is None:
        return None
    return dict(value) if isinstance(value, Mapping) else [value] if isinstance(value, str) else list(value)


def _filters(param: str | Iterable[str] | Mapping[str, Any] | None) -> list[str] | None:
    if isinstance(param, Mapping):
        return [f"{name}={_param_text(value)}" for name, value in param.items()] or None
    return _strings(param)


def _param_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _since(value: str | float | date | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return repr(value.timestamp())
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid("since", f"{value!r} is not a time: give an ISO date, Unix seconds, a date or a datetime")
    return repr(float(value))
