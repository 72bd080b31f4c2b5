"""The one HTTP client of the modelyard API (docs/api.md), shared by the CLI and the SDK.

This module owns how we talk to a server: one method per endpoint, each
returning the parsed JSON; every failure becomes a :class:`ClientError`; and,
with no ``MODELYARD_URL``, finding or starting the embedded local server.

    ModelyardError
     └── ClientError(status, code, message, field)   an error reply, or no reply at all
          └── status None: the server could not be reached (code "unavailable")

Nomenclature: a *progress* callback is called as ``progress(done_bytes, total_bytes_or_None)``.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple
from urllib.parse import quote

import httpx
import orjson
from httpx_sse import SSEError, connect_sse

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.states import JobState

Progress = Callable[[int, "int | None"], None]
CHUNK = 256 * 1024
EMBEDDED_START_TIMEOUT = 30.0
# The server pings SSE streams every 15 s; four silent pings mean the connection is dead.
STREAM_READ_TIMEOUT = 60.0


class ClientError(ModelyardError):
    """An error reply from the server (``status`` set) or no reply at all (``status`` None)."""

    def __init__(self, status: int | None, code: ErrorCode | str, message: str, field: str | None = None) -> None:
        try:
            code = ErrorCode(code)
        except ValueError:
            code = ErrorCode.UNAVAILABLE if status is None or status >= 500 else ErrorCode.INVALID
        super().__init__(code, message, field=field)
        self.status = status


class StreamEvent(NamedTuple):
    """One server-sent event: its name (``line``, ``end``, ``job``) and its JSON data."""

    event: str
    data: Any


class Client:
    """A connection to one modelyard server. Use as a context manager, or call :meth:`close`."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0, embedded: bool = False) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.embedded = embedded  # the server of this machine's MODELYARD_HOME: it reads local paths itself
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Small requests (stop, a log page) must not wait on Nagle's algorithm.
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            transport=transport,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Client":
        """MODELYARD_URL and MODELYARD_TOKEN; with no URL, the embedded server (started if needed)."""
        env = os.environ if env is None else env
        home = modelyard_home(env)
        url = env.get("MODELYARD_URL") or ensure_embedded_server(home, env=env)
        token = env.get("MODELYARD_TOKEN") or read_token(home)
        return cls(url, token, embedded=not env.get("MODELYARD_URL"))

    def close(self) -> None:
        self._http.close()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._errors():
            response = self._http.request(method, path, **kwargs)
        _raise_for_error(response)
        if not response.content:
            return None  # 204: nothing to say
        return orjson.loads(response.content)  # several times faster than json on long metric series

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn transport failures into one clear ClientError."""
        try:
            yield
        except httpx.TimeoutException as e:
            raise ClientError(None, ErrorCode.UNAVAILABLE, f"the modelyard server at {self.url} did not answer in time ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise ClientError(None, ErrorCode.UNAVAILABLE, f"cannot reach the modelyard server at {self.url}: {e or type(e).__name__}") from e

    # -- server, users ----------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def me(self) -> dict[str, Any]:
        return self._request("GET", "/me")

    def create_user(self, name: str, *, admin: bool = False, no_isolation: bool = False,
                    email: str | None = None) -> dict[str, Any]:
        """``{"user": {...}, "token": "..."}``; admins only. ``no_isolation``: see README, "Security model"."""
        body: dict[str, Any] = {"name": name, "admin": admin}
        if no_isolation:
            body["no_isolation"] = True
        if email:
            body["email"] = email
        return self._request("POST", "/users", json=body)

    # -- notices, profile ---------------------------------------------------

    def notices(self, *, unread: bool = False, limit: int = 50) -> dict[str, Any]:
        """``{"notices": [...newest first], "unread": N}`` of the caller."""
        return self._request("GET", "/notices", params={"unread": str(unread).lower(), "limit": limit})

    def read_notice(self, notice_id: int) -> dict[str, Any]:
        return self._request("POST", f"/notices/{int(notice_id)}/read")

    def read_all_notices(self) -> dict[str, Any]:
        return self._request("POST", "/notices/read-all")

    def profile(self, *, user: str | None = None) -> dict[str, Any]:
        """The caller's (or, for an admin, ``user``'s) email and per-event channels."""
        return self._request("GET", "/profile", params={"user": user} if user else {})

    def update_profile(self, *, email: str | None | bool = False, notify: Mapping[str, list[str]] | None = None,
                       user: str | None = None) -> dict[str, Any]:
        """``email``: the new address, None for none, False to leave it; ``notify``: event -> channels."""
        body: dict[str, Any] = {}
        if email is not False:
            body["email"] = email
        if notify:
            body["notify"] = dict(notify)
        return self._request("PATCH", "/profile", json=body, params={"user": user} if user else {})

    def capacity(self) -> dict[str, Any]:
        return self._request("GET", "/capacity")

    # -- users, quotas (admins), one's own usage ------------------------------

    def list_users(self) -> list[dict[str, Any]]:
        """Every user with their quota and usage; admins only."""
        return self._request("GET", "/users")["users"]

    def set_quota(self, name: str, **quota: int | float | None) -> dict[str, Any]:
        """Set ``gpus``, ``cpus`` and/or ``queued`` of ``name`` (None clears one); admins only."""
        return self._request("PUT", f"/users/{name}/quota", json=quota)

    def set_admin(self, name: str, admin: bool) -> dict[str, Any]:
        return self._request("PUT", f"/users/{name}/admin", json={"admin": admin})

    def my_usage(self) -> dict[str, Any]:
        """The caller's own quota and usage."""
        return self._request("GET", "/me/usage")

    # -- tokens, webhook secret ---------------------------------------------

    def create_token(self, *, name: str = "", expires_in: float | None = None) -> dict[str, Any]:
        """A new token for the caller: ``{"token": "my_...", "id", "prefix", "expires_at", ...}``.

        ``expires_in``: seconds (0: never); None: the server's default (MODELYARD_TOKEN_TTL)."""
        body: dict[str, Any] = {"name": name}
        if expires_in is not None:
            body["expires_in"] = int(expires_in)
        return self._request("POST", "/tokens", json=body)

    def list_tokens(self, *, all_users: bool = False) -> dict[str, Any]:
        return self._request("GET", "/tokens", params={"all": "true"} if all_users else {})

    def revoke_token(self, ref: str | int) -> dict[str, Any]:
        """Revoke a token by its id or its prefix (as ``list_tokens`` shows it)."""
        return self._request("DELETE", f"/tokens/{quote(str(ref), safe='')}")

    def webhook_secret(self, *, rotate: bool = False) -> dict[str, Any]:
        """The key this user's job webhooks are signed with (``{"secret", "header", "algorithm"}``)."""
        return self._request("POST", "/webhook-secret/rotate") if rotate else self._request("GET", "/webhook-secret")

    # -- jobs -------------------------------------------------------------

    def upload_snapshot(
        self, source: IO[bytes] | Iterable[bytes], *, size: int | None = None, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Stream a workdir ``.tar.gz`` to the server; ``{"key", "size"}``."""
        if size is None:
            size = _remaining_size(source)
        headers = {"Content-Type": "application/gzip"}
        if size is not None:
            headers["Content-Length"] = str(size)
        body = _counting(_chunks(source), size, progress)
        return self._request("POST", "/snapshots", content=body, headers=headers)

    def submit_job(self, spec: Mapping[str, Any], *, snapshot: str | None = None) -> dict[str, Any]:
        return self._request("POST", "/jobs", json={"spec": dict(spec), "snapshot": snapshot})

    def create_sweep(self, spec: Mapping[str, Any], *, snapshot: str | None = None) -> dict[str, Any]:
        return self._request("POST", "/sweeps", json={"spec": dict(spec), "snapshot": snapshot})

    def list_sweeps(self, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return self._request("GET", "/sweeps", params={"limit": limit, "offset": offset})

    def get_sweep(self, sweep_id: int) -> dict[str, Any]:
        return self._request("GET", f"/sweeps/{sweep_id}")

    def stop_sweep(self, sweep_id: int) -> dict[str, Any]:
        return self._request("POST", f"/sweeps/{sweep_id}/stop")

    def list_models(self, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """The caller's registered models (README "MLflow model registry"), the most recently changed first."""
        return self._request("GET", "/models", params={"limit": limit, "offset": offset})

    def get_model(self, name: str, *, owner: str | None = None) -> dict[str, Any]:
        """A registered model with its versions; ``owner``: an admin's look at another user's."""
        return self._request("GET", f"/models/{quote(name, safe='')}", params={"owner": owner} if owner else None)

    def create_console(self, spec: Mapping[str, Any], *, idle_timeout: float | str | None = None,
                       snapshot: str | None = None) -> dict[str, Any]:
        """Queue a notebook console job (``spec``: any job's fields but the command); the job."""
        return self._request("POST", "/consoles", json={"spec": dict(spec), "idle_timeout": idle_timeout,
                                                         "snapshot": snapshot})

    def console_status(self, job_id: int) -> dict[str, Any]:
        """``{"job_id", "state", "ready", "path", "idle_timeout"}``: ``ready`` once JupyterLab answers."""
        return self._request("GET", f"/jobs/{job_id}/console")

    def list_jobs(
        self, *, state: str | list[str] | None = None, q: str | None = None, limit: int = 50, offset: int = 0,
        all_users: bool = False, filters: list[str] | None = None, tags: list[str] | None = None,
        owner: str | None = None, dataset: str | None = None, environment: str | None = None,
        since: str | None = None, until: str | None = None, sort: str | None = None, experiment: str | None = None,
    ) -> dict[str, Any]:
        """``{"jobs": [...], "total": n, "param_names": [...]}``, newest first unless ``sort`` says
        otherwise; ``filters`` are parameter expressions (``lr>=0.01``), all of which must hold."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, "all": str(all_users).lower()}
        given = {"state": [state] if isinstance(state, str) else state, "q": q, "param": filters, "tag": tags,
                 "owner": owner, "dataset": dataset, "environment": environment, "since": since, "until": until,
                 "sort": sort, "experiment": experiment}
        params.update({k: v for k, v in given.items() if v})
        return self._request("GET", "/jobs", params=params)

    def change_tags(self, job_id: int, *, add: list[str] | None = None, remove: list[str] | None = None) -> dict[str, Any]:
        """``{"job_id", "tags"}``: the job's tags after adding ``add`` and removing ``remove``."""
        return self._request("POST", f"/jobs/{job_id}/tags", json={"add": add or [], "remove": remove or []})

    def get_job(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}")

    def stop_job(self, job_id: int) -> dict[str, Any]:
        return self._request("POST", f"/jobs/{job_id}/stop")

    def restart_job(self, job_id: int) -> dict[str, Any]:
        return self._request("POST", f"/jobs/{job_id}/restart")

    def clone_job(
        self, job_id: int, *, resume: bool = False, command: list[str] | str | None = None, name: str | None = None,
        snapshot: str | None = None, params: list[str] | None = None, tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """A new job like ``job_id``; ``snapshot``: new code (a key from ``upload_snapshot``), else the source's;
        ``params`` (``NAME=VALUE``) over its parameters, ``tags`` added to its tags."""
        body: dict[str, Any] = {"resume": resume, "command": command, "name": name}
        if snapshot is not None:
            body["snapshot"] = snapshot
        if params:
            body["params"] = params
        if tags:
            body["tags"] = tags
        return self._request("POST", f"/jobs/{job_id}/clone", json=body)

    def remove_job(self, job_id: int, *, keep_final: bool = False) -> dict[str, Any]:
        return self._request("DELETE", f"/jobs/{job_id}", params={"keep_final": "true"} if keep_final else None)

    def removals(self, *, limit: int = 50, offset: int = 0, reason: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if reason:
            params["reason"] = reason
        return self._request("GET", "/admin/removals", params=params)

    def disk(self, *, limit: int = 50, offset: int = 0, refresh: bool = False) -> dict[str, Any]:
        return self._request("GET", "/admin/disk", params={"limit": limit, "offset": offset,
                                                           "refresh": "true" if refresh else "false"})

    def compare(self, job_ids: Iterable[int]) -> dict[str, Any]:
        """Jobs side by side: ``{"ids", "jobs", "params": {"names", "differ"}, "spec_differences",
        "metrics": [{"name", "best_mode", "jobs": [{"last", "best", ...} | None]}]}``."""
        return self._request("GET", "/compare", params={"ids": ",".join(str(i) for i in job_ids)})

    def compare_csv(self, job_ids: Iterable[int]) -> str:
        """The same comparison as CSV text, one row per job."""
        with self._errors():
            response = self._http.get("/compare.csv", params={"ids": ",".join(str(i) for i in job_ids)})
        _raise_for_error(response)
        return response.text

    # -- secrets (a value goes in, never comes back) -------------------------

    def set_secret(self, name: str, value: str) -> dict[str, Any]:
        """Store (or replace) the caller's secret ``name``; ``{"name", "created_at", "updated_at"}``."""
        return self._request("PUT", f"/secrets/{name}", json={"value": value})

    def list_secrets(self) -> dict[str, Any]:
        """``{"secrets": [{"name", "created_at", "updated_at"}, ...]}``: names and dates only."""
        return self._request("GET", "/secrets")

    def remove_secret(self, name: str) -> None:
        self._request("DELETE", f"/secrets/{name}")

    def job_events(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}/events")

    def job_logs(self, job_id: int, *, attempt: int | None = None, offset: int = 0, limit: int = 1000,
                 node: int | None = None) -> dict[str, Any]:
        """``{"attempt", "lines": [{"n", "t", "stream", "text", "node"}], "next_offset", "done", "nodes"}``;
        ``node``: only that node rank's lines."""
        params = _without_none({"attempt": attempt, "offset": offset, "limit": limit, "node": node})
        return self._request("GET", f"/jobs/{job_id}/logs", params=params)

    def metrics(self, job_id: int, *, names: Iterable[str] | None = None, max_points: int | None = None,
                columns: bool = False) -> dict[str, Any]:
        """``{name: [{"value", "step", "epoch", "time"}, ...]}``; with ``columns``
        ``{name: {"step": [...], "epoch": [...], "time": [...], "value": [...]}}`` (faster for long series)."""
        params = _without_none({"names": ",".join(names) if names else None, "max_points": max_points,
                                "layout": "columns" if columns else None})
        return self._request("GET", f"/jobs/{job_id}/metrics", params=params)

    def system_metrics(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}/system-metrics")

    def list_outputs(self, job_id: int, *, attempt: int | None = None, final: bool = False) -> dict[str, Any]:
        """``{"attempt", "attempts", "model_attempts", "files": [{"path", "size", "mtime", "final"}]}``:
        attempt ``attempt``'s outputs, by default the job's (its latest attempt's that has any);
        ``final``: only its model (``final/``), by default of the latest attempt that has one."""
        params = _without_none({"attempt": attempt, "final": "true" if final else None})
        return self._request("GET", f"/jobs/{job_id}/outputs", params=params)

    def download_output(self, job_id: int, path: str, dest: Path, *, attempt: int | None = None,
                        progress: Progress | None = None) -> Path:
        """Stream one output file (of attempt ``attempt``; by default of the job's outputs) to ``dest``
        (written whole or not at all)."""
        query = f"?attempt={attempt}" if attempt else ""
        return self._download(f"/jobs/{job_id}/outputs/{quote(path)}{query}", dest, progress)

    # -- datasets ---------------------------------------------------------

    def upload_dataset_source(self, path: Path, *, progress: Progress | None = None) -> dict[str, Any]:
        """Stream a local file or folder to the server as a tar (never whole in memory);
        ``{"upload": id, "size": n}`` for :meth:`create_dataset`."""
        size, body = tar_stream(Path(path))
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        with self._errors():
            response = self._http.post("/datasets/uploads", content=_counting(body, size, progress),
                                       headers=headers, timeout=httpx.Timeout(None, connect=5.0))
        _raise_for_error(response)
        return response.json()

    def create_dataset(
        self, name: str, *, source: str | None = None, upload: str | None = None,
        split: str | Mapping[str, float] | None = None, seed: int = 0, fmt: str | None = None,
        description: str | None = None, label_column: str | None = None, data_key: str | None = None,
        kind: str | None = None, visibility: str | None = None,
    ) -> dict[str, Any]:
        """A new version of ``name`` from ``source`` (a path or URL the server reads) or an ``upload``;
        the existing version (``"new": false``) when the content is the same. Waits as long as it takes.
        ``visibility``: "private" (a new name's default) or "public"; for an existing name, changes it."""
        body = _without_none({"name": name, "source": source, "upload": upload,
                              "split": dict(split) if isinstance(split, Mapping) else split, "seed": seed,
                              "format": fmt, "description": description, "label_column": label_column,
                              "data_key": data_key, "kind": kind, "visibility": visibility})
        return self._request("POST", "/datasets", json=body, timeout=httpx.Timeout(None, connect=5.0))

    def set_dataset_visibility(self, name: str, visibility: str) -> dict[str, Any]:
        """Make dataset ``name`` "public" or "private"; ``{"name", "owner", "visibility"}``."""
        return self._request("PATCH", f"/datasets/{quote(name, safe='')}", json={"visibility": visibility})

    def list_datasets(self) -> dict[str, Any]:
        """The caller's datasets and the public ones:
        ``{"datasets": [{"name", "owner", "visibility", "versions": n, "latest": VERSION}]}``."""
        return self._request("GET", "/datasets")

    def get_dataset(self, ref: str) -> dict[str, Any]:
        """``NAME`` -> ``{"name", "latest", "versions": [VERSION...]}`` (newest first); ``NAME:VERSION`` -> VERSION."""
        name, _, version = ref.partition(":")
        path = f"/datasets/{quote(name, safe='')}" + (f"/{quote(version, safe='')}" if version else "")
        return self._request("GET", path)

    def remove_dataset(self, ref: str) -> dict[str, Any]:
        """Remove ``NAME:VERSION`` (or every version of ``NAME``); ``{"removed": [VERSION...]}``."""
        name, _, version = ref.partition(":")
        path = f"/datasets/{quote(name, safe='')}" + (f"/{quote(version, safe='')}" if version else "")
        return self._request("DELETE", path)

    # -- environments -----------------------------------------------------

    def create_environment(self, name: str, *, image: str | None = None, requirements: str | None = None,
                           description: str = "") -> dict[str, Any]:
        """A named environment of exactly one of ``image`` and ``requirements`` (a file's text)."""
        body = {"name": name, "image": image, "requirements": requirements, "description": description}
        return self._request("POST", "/environments", json=body)

    def list_environments(self) -> dict[str, Any]:
        """``{"environments": [ENVIRONMENT...]}``: the user's own and the admins' (everyone's, for an admin)."""
        return self._request("GET", "/environments")

    def get_environment(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/environments/{quote(name, safe='')}")

    def remove_environment(self, name: str) -> dict[str, Any]:
        return self._request("DELETE", f"/environments/{quote(name, safe='')}")

    def download_dataset_file(
        self, name: str, version: str, path: str, dest: Path, *, progress: Progress | None = None
    ) -> Path:
        """Stream one file of a dataset version to ``dest`` (written whole or not at all)."""
        return self._download(f"/datasets/{quote(name, safe='')}/{quote(version, safe='')}/files/{quote(path)}",
                              dest, progress)

    def _download(self, url_path: str, dest: Path, progress: Progress | None) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        with self._errors(), self._http.stream("GET", url_path) as response:
            _raise_for_error(response)
            total = int(response.headers["Content-Length"]) if "Content-Length" in response.headers else None
            with partial.open("wb") as f:
                for chunk in _counting(response.iter_bytes(CHUNK), total, progress):
                    f.write(chunk)
        partial.replace(dest)
        return dest

    # -- streams ----------------------------------------------------------

    def stream_logs(self, job_id: int, *, attempt: int | None = None, offset: int = 0,
                    node: int | None = None) -> Iterator[StreamEvent]:
        """``line`` events (data: a log line object), then one ``end`` event (data: ``{"state"}``)."""
        params = _without_none({"attempt": attempt, "offset": offset, "node": node})
        return self._stream(f"/jobs/{job_id}/logs/stream", params, STREAM_READ_TIMEOUT)

    def stream_events(self, *, read_timeout: float = STREAM_READ_TIMEOUT) -> Iterator[StreamEvent]:
        """A ``job`` event (data: JOB) on every state change of the caller's jobs; endless."""
        return self._stream("/events/stream", {}, read_timeout)

    def _stream(self, path: str, params: dict[str, Any], read_timeout: float) -> Iterator[StreamEvent]:
        with self._open_stream(path, params, read_timeout) as events:
            yield from events

    @contextmanager
    def _open_stream(self, path: str, params: dict[str, Any], read_timeout: float) -> Iterator[Iterator[StreamEvent]]:
        """Connect (status checked) before yielding the events iterator."""
        timeout = httpx.Timeout(read_timeout, connect=5.0)
        with self._errors(), connect_sse(self._http, "GET", path, params=params, timeout=timeout) as source:
            _raise_for_error(source.response)
            yield _events(source.iter_sse(), source.response.status_code)

    def wait_job(self, job_id: int, *, timeout: float | None = None) -> dict[str, Any]:
        """The job once it reaches a final state, or as it is when ``timeout`` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            read_timeout = STREAM_READ_TIMEOUT if left is None else max(0.05, min(STREAM_READ_TIMEOUT, left))
            try:
                with self._open_stream("/events/stream", {}, read_timeout) as events:
                    # The server fixes where the stream starts before it answers, so
                    # any change after this read arrives on the stream.
                    job = self.get_job(job_id)
                    if is_final(job) or (left is not None and left <= 0):
                        return job
                    for event in events:
                        if event.event == "job" and event.data.get("id") == job_id and is_final(event.data):
                            break
            except ClientError as e:
                # A quiet stream past its read timeout: look again (and honour the deadline).
                if not isinstance(e.__cause__, httpx.ReadTimeout):
                    raise


def _events(sses: Iterator[Any], status: int) -> Iterator[StreamEvent]:
    try:
        for sse in sses:
            yield StreamEvent(sse.event, sse.json() if sse.data else None)
    except SSEError as e:
        raise ClientError(status, ErrorCode.UNAVAILABLE, f"bad event stream: {e}") from e


def is_final(job: Mapping[str, Any]) -> bool:
    return JobState(job["state"]).is_terminal()


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    response.read()
    try:
        err = response.json()["error"]
        code, message, field = err.get("code", ""), err["message"], err.get("field")
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip()[:200] or response.reason_phrase
        raise ClientError(response.status_code, "", f"HTTP {response.status_code}: {text}") from None
    raise ClientError(response.status_code, code, message, field)


def _without_none(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _remaining_size(source: IO[bytes] | Iterable[bytes]) -> int | None:
    """Bytes left in a real file (so the upload has a Content-Length), else None."""
    try:
        return os.fstat(source.fileno()).st_size - source.tell()  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return None


def _chunks(source: IO[bytes] | Iterable[bytes]) -> Iterator[bytes]:
    if hasattr(source, "read"):
        while chunk := source.read(CHUNK):  # type: ignore[union-attr]
            yield chunk
    else:
        yield from source  # type: ignore[misc]


def tar_stream(root: Path) -> tuple[int, Iterator[bytes]]:
    """An uncompressed tar of a file or folder as ``(exact size, chunks)``, produced as it is read.

    Every entry sits under ``root``'s own name, so the server sees the source as the
    client named it. A file that changes size while it is sent fails the upload."""
    root = root.resolve()
    if root.is_file():
        files = [(root, root.name)]
    elif root.is_dir():
        files = sorted((Path(d) / f, f"{root.name}/{(Path(d) / f).relative_to(root).as_posix()}")
                       for d, _dirs, names in os.walk(root) for f in names)
    else:
        raise ModelyardError(ErrorCode.INVALID, f"{root} is not a file or folder", field="source")
    entries = []
    for path, arcname in files:
        info = tarfile.TarInfo(arcname)
        st = path.stat()
        info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
        entries.append((path, info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), st.st_size))
    size = sum(len(h) + n + (-n % tarfile.BLOCKSIZE) for _, h, n in entries) + 2 * tarfile.BLOCKSIZE

    def chunks() -> Iterator[bytes]:
        for path, header, n in entries:
            yield header
            sent = 0
            with path.open("rb") as f:
                while sent < n and (chunk := f.read(min(CHUNK, n - sent))):
                    sent += len(chunk)
                    yield chunk
            if sent != n:
                raise ModelyardError(ErrorCode.INVALID, f"{path} changed while it was uploaded", field="source")
            yield b"\0" * (-n % tarfile.BLOCKSIZE)
        yield b"\0" * (2 * tarfile.BLOCKSIZE)

    return size, chunks()


def _counting(chunks: Iterable[bytes], total: int | None, progress: Progress | None) -> Iterator[bytes]:
    done = 0
    if progress:
        progress(0, total)
    for chunk in chunks:
        yield chunk
        done += len(chunk)
        if progress:
            progress(done, total)


# -- the embedded server (docs/api.md, "Embedded server") ---------------------


def modelyard_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("MODELYARD_HOME") or Path.home() / ".modelyard").expanduser().resolve()


def read_token(home: Path) -> str | None:
    try:
        return (home / "token").read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_embedded_server(
    home: Path, *, env: Mapping[str, str] | None = None, timeout: float = EMBEDDED_START_TIMEOUT
) -> str:
    """The URL of this home's running embedded server; start one if none answers."""
    if url := running_server_url(home):
        return url
    home.mkdir(parents=True, exist_ok=True)
    with (home / "server.lock").open("a") as lock:
        # Held while starting, so two CLIs started together spawn one server.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if url := running_server_url(home):
            return url
        proc = _spawn_server(home, env)
        return _await_server(home, proc, timeout)


def running_server_url(home: Path) -> str | None:
    """The URL in ``server.json`` when its process lives and ``/health`` answers."""
    try:
        info = json.loads((home / "server.json").read_text())
        url, pid = info["url"], int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(pid):
        return None
    try:
        ok = httpx.get(f"{url.rstrip('/')}/api/v1/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return None
    return url if ok else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _spawn_server(home: Path, env: Mapping[str, str] | None) -> subprocess.Popen[bytes]:
    child_env = dict(os.environ if env is None else env)
    child_env["MODELYARD_HOME"] = str(home)
    child_env.pop("MODELYARD_URL", None)
    with (home / "server.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "modelyard", "server", "--embedded"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=child_env, start_new_session=True, close_fds=True,
        )


def _await_server(home: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if url := running_server_url(home):
            return url
        if proc.poll() is not None:
            raise ClientError(None, ErrorCode.UNAVAILABLE, f"the embedded server exited with code {proc.returncode}: {_log_tail(home)}")
        time.sleep(0.1)
    raise ClientError(None, ErrorCode.UNAVAILABLE, f"the embedded server did not start within {timeout:.0f}s: {_log_tail(home)}")


def _log_tail(home: Path) -> str:
    try:
        lines = (home / "server.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no server.log"
    return (lines[-1] if lines else "server.log is empty") + f" (see {home / 'server.log'})"
