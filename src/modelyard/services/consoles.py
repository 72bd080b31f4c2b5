"""Notebook consoles (README "Notebook consoles"): creating one, and what the proxy may reach.

Decided here, for the API and the pages alike: a console is reached by its job's owner only (anyone
else, admins too, gets 404, as for a job that does not exist), while its attempt runs, at the address
jobs/console.py derives from that attempt (never one the job reports), with the console token the
browser never sees, and only while that port is held by the job's own uid (on the local executor read
here, on Ray asked of the attempt's actor on its node: jobs/console.py). Which request headers go
to JupyterLab and which of its answers come back: never our session or CSRF cookie, our
Authorization, or a cookie of ours set by the console.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.executors.base import ConsoleNodes
from modelyard.executors.listeners import listener_uids
from modelyard.jobs import JobSpec, JobState, console
from modelyard.server.auth import COOKIE
from modelyard.server.platform import Platform
from modelyard.db import consoles as store_consoles
from modelyard.db import jobs as store_jobs
from modelyard.db import users as store_users
from modelyard.db.records import Job, User

log = logging.getLogger("modelyard.consoles")
OUR_COOKIES = frozenset({COOKIE, "modelyard_csrf"})  # the session's, and the sign-in form's (web/session.py)
# hop-by-hop (RFC 9110 7.6.1), and what speaks for us rather than for the browser
_DROP_REQUEST = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
    "upgrade", "host", "authorization", "cookie", "origin", "referer", "x-modelyard-ui", "forwarded",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "sec-websocket-key", "sec-websocket-version",
    "sec-websocket-extensions", "sec-websocket-protocol", "sec-websocket-accept",
})
# and what would reach past the console's path: a service worker for the whole site, clearing our storage
_DROP_RESPONSE = frozenset({"connection", "keep-alive", "transfer-encoding", "trailer", "upgrade",
                            "service-worker-allowed", "clear-site-data"})


@dataclass(frozen=True)
class Upstream:
    """Where one console answers: its JupyterLab, and the header that signs the proxy in."""
    job_id: int
    port: int
    token: str
    host: str = console.HOST

    def http_url(self, path: str, query: str = "") -> str:
        return f"http://{console.authority(self.host, self.port)}{path}" + (f"?{query}" if query else "")

    def ws_url(self, path: str, query: str = "") -> str:
        return f"ws://{console.authority(self.host, self.port)}{path}" + (f"?{query}" if query else "")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


def create(p: Platform, user: User, spec: Mapping[str, Any], *, idle_timeout: float | str | None,
           snapshot: str | None = None) -> Job:
    """Queue a console job: ``spec`` is any job's, less the command, which is the platform's."""
    if "command" in spec or "console" in spec:
        field = "command" if "command" in spec else "console"
        raise ModelyardError(ErrorCode.INVALID, f"a console's {field} is the platform's; leave it out",
                             field=f"spec.{field}")
    if p.executor.name != "local" and not isinstance(p.executor, ConsoleNodes):
        raise ModelyardError(ErrorCode.INVALID, f"notebook consoles run on the local and Ray executors, not "
                             f"{p.executor.name}: the proxy could not check who listens on the console's port",
                             field="spec")
    in_python = not (spec.get("image") or spec.get("requirements") or spec.get("environment"))
    # the server's own Python when it runs bare; an image's or virtualenv's own `python` otherwise
    command = [sys.executable if in_python else "python", "-m", console.MODULE]
    settings = {} if idle_timeout is None else {"idle_timeout": idle_timeout}
    data = {"name": "notebook console", **spec, "command": command, "console": settings}
    return p.submit(user, JobSpec.model_validate(data), snapshot=snapshot, reason="console submitted")


def console_job(p: Platform, user: User, job_id: int) -> Job:
    """The user's own console job; another's (an admin's view too) is not found, as one nobody has."""
    try:
        job = store_jobs.get_job(p.db, job_id)
    except ModelyardError:
        job = None
    if job is None or job.user_id != user.id:
        raise not_found(f"job {job_id}")
    if job.spec.console is None:
        raise ModelyardError(ErrorCode.CONFLICT, f"job {job_id} is not a notebook console (modelyard notebook)")
    return job


def upstream(p: Platform, user: User, job_id: int) -> Upstream:
    """Where the user's running console ``job_id`` answers; CONFLICT while it is not running."""
    job = console_job(p, user, job_id)
    found = store_consoles.running_attempt(p.db, job_id) if job.state is JobState.RUNNING else None
    if found is None:
        raise ModelyardError(ErrorCode.CONFLICT, f"the console of job {job_id} is not running "
                             f"(the job is {job.state.value})")
    attempt, digest = found
    port = console.console_port(attempt.id, digest)
    host = console.HOST
    if p.executor.name == "local":
        check_listener(port, job_uid(p, job))
    elif isinstance(p.executor, ConsoleNodes):  # on another machine: its node's trusted party tells
        where = p.executor.console_listener(attempt, port)
        check_owners(port, set(where.uids), where.job_uid)
        host = where.host
    else:
        raise ModelyardError(ErrorCode.UNAVAILABLE, f"the {p.executor.name} executor cannot tell who listens on "
                             "the console's port")
    return Upstream(job_id, port, console.console_token(attempt.id, digest), host)


def job_uid(p: Platform, job: Job) -> int:
    """The uid the job's command runs as: its owner's on a shared server, else the server's own."""
    if p.settings.job_uids is None:
        return os.getuid()
    return store_users.job_uid(p.db, job.user_id, p.settings.job_uids)


def check_listener(port: int, uid: int) -> None:
    """Refuse a port that another uid holds: a job of someone else that bound the console's port before
    it (squatting) must not get the owner's browser, nor the console token the proxy would send it."""
    owners = listener_uids(port)
    if owners is None:  # no /proc/net (not Linux): fine while every job runs as the server's own user
        if uid != os.getuid():
            raise ModelyardError(ErrorCode.UNAVAILABLE, "cannot tell who listens on the console's port here")
        return
    check_owners(port, owners, uid)


def check_owners(port: int, owners: set[int], uid: int) -> None:
    """Refuse unless every socket listening on ``port`` is ``uid``'s, and one is."""
    if not owners:
        raise ModelyardError(ErrorCode.CONFLICT, "the console is not listening yet; try again in a moment")
    if owners != {uid}:
        log.warning("console port %s is held by uid(s) %s, not the job's %s: refused", port, sorted(owners), uid)
        raise ModelyardError(ErrorCode.CONFLICT, "the console's port is held by another user's process; "
                             "restart the console")


def status(p: Platform, user: User, job_id: int) -> dict[str, Any]:
    """The console's state and link; ``ready``: JupyterLab answers (what `modelyard notebook` waits for)."""
    job = console_job(p, user, job_id)
    ready = False
    if job.state is JobState.RUNNING:
        import httpx  # here, not at server start

        try:
            up = upstream(p, user, job_id)
            r = httpx.get(up.http_url(console.base_url(job_id) + "api/status"), headers=up.auth, timeout=5)
            ready = r.status_code == 200
        except (ModelyardError, httpx.HTTPError):
            ready = False
    assert job.spec.console is not None
    return {"job_id": job.id, "state": job.state.value, "ready": ready, "path": console.base_url(job.id) + "lab",
            "idle_timeout": job.spec.console.idle_timeout}


def check_same_origin(headers: Mapping[str, str], scheme: str, netloc: str) -> None:
    """Refuse a request another site's page made with the owner's browser (a sibling subdomain is the
    same *site*, so the SameSite=Strict session cookie comes along): JupyterLab's own guard, its origin
    check and XSRF cookie, is what the proxy's token header skips. Browsers send ``Origin`` with every
    websocket and every unsafe request, ``Sec-Fetch-Site`` with every request."""
    ours = f"{'https' if scheme in ('https', 'wss') else 'http'}://{netloc}"
    origin, site = headers.get("origin"), headers.get("sec-fetch-site", "same-origin")
    if (origin is not None and origin != ours) or site not in ("same-origin", "none"):
        raise ModelyardError(ErrorCode.FORBIDDEN, "a notebook console takes requests from its own pages only, "
                             f"not from {origin or site}")


def request_headers(headers: Iterable[tuple[str, str]], up: Upstream) -> list[tuple[str, str]]:
    """The browser's headers as JupyterLab gets them: ours removed, the console token added."""
    headers = list(headers)
    out = [(k, v) for k, v in headers if k.lower() not in _DROP_REQUEST]
    cookie = "; ".join(c for c in _their_cookies(headers))
    if cookie:
        out.append(("cookie", cookie))
    out.extend(up.auth.items())
    return out


def _their_cookies(headers: Iterable[tuple[str, str]]) -> list[str]:
    found = []
    for k, v in headers:
        if k.lower() == "cookie":
            for part in v.split(";"):
                name = part.split("=", 1)[0].strip()
                if name and name not in OUR_COOKIES:
                    found.append(part.strip())
    return found


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """JupyterLab's answer headers, its CSP included, less hop-by-hop ones and any cookie of ours."""
    out = []
    for k, v in raw:
        name = k.decode("latin-1").lower()
        if name in _DROP_RESPONSE:
            continue
        if name == "set-cookie" and v.decode("latin-1").split("=", 1)[0].strip() in OUR_COOKIES:
            continue
        out.append((name.encode(), v))
    return out
