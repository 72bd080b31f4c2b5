"""The pages under /ui and the partials htmx swaps into them.

Each page reads its data from the services the API's routes call too
(``services/``: jobs, queue, job_query, datasets, environments, compare, ...)
with the signed-in user, never from a route handler, so a page can never
show what ``/api/v1`` would not; ``?format=json`` returns that data.
Pages are for people: no session (or a bad one) redirects to the sign-in
form, and another user's job is a 404 page, exactly as the API answers 404.
"""
from __future__ import annotations

import functools
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs import JobState
from modelyard.jobs.notebook import output_name
from modelyard.services import job_query as job_query_service
from modelyard.server.auth import COOKIE, client_address, get_platform, session_policy, throttle
from modelyard.server.platform import Platform
from modelyard.server.throttle import Throttled
from modelyard.server.api_schema import MAX_ID
from modelyard.jobs.patterns import PRESETS
from modelyard.server.web import job_form
from modelyard.server.web import session as cookies
from modelyard.server.web.render import render, respond
from modelyard.services import environments as environments_service
from modelyard.services import jobs as jobs_service
from modelyard.services import notices
from modelyard.services import registry_views
from modelyard.services.queue import queue_view, waiting_reason
from modelyard.services import compare as compare_service
from modelyard.db.records import User
from modelyard.db.jobs import last_event_id
from modelyard.db.sessions import create_session, end_session, session_user
from modelyard.db.users import live_token

router = APIRouter(include_in_schema=False)
PlatformDep = Annotated[Platform, Depends(get_platform)]
PAGE_SIZE = 25


class SignInRequired(Exception):
    """Raised by ``page_user``; answered with a redirect to the sign-in form."""


def page_user(request: Request, p: PlatformDep) -> User:
    session = request.cookies.get(COOKIE)
    user = session_user(p.db, session, session_policy(p.settings)) if session else None
    if user is None:
        raise SignInRequired()
    # The page's live connection resumes after this event: read before the page's
    # data, a change that lands while the page is built or loads is replayed, not lost.
    request.state.events_after = last_event_id(p.db)
    request.state.unread = notices.unread_count(p.db, user)  # the bell's count, on every page
    return user


UserDep = Annotated[User, Depends(page_user)]


def signin_redirect(request: Request) -> Response:
    if request.query_params.get("format") == "json":
        return JSONResponse(ModelyardError(ErrorCode.UNAUTHENTICATED, "sign in first").to_dict(), status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)


def _safe_next(target: str | None) -> str:
    # only a path on this site: an open redirect would let a link send people elsewhere after sign-in
    return target if target and target.startswith("/ui/") and not target.startswith("//") else "/ui/jobs"


@router.get("/")
@router.get("/ui")
@router.get("/ui/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/ui/login")
def login_form(request: Request, p: PlatformDep, next: str | None = None) -> HTMLResponse:
    return _login_page(request, p, _safe_next(next))


def _login_page(request: Request, p: Platform, target: str, *, error: str | None = None,
                status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    """The sign-in form, with a CSRF value that its cookie repeats (double submit)."""
    csrf = cookies.csrf_token(request)
    html = render("login.html", request=request, me=None, next=target, error=error, csrf=csrf)
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    cookies.set_csrf_cookie(response, csrf, request, p.settings)
    return response


@router.post("/ui/login")
async def login(request: Request, p: PlatformDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or [None])[0])
    if not cookies.csrf_ok(request, (form.get(cookies.CSRF_FIELD) or [None])[0]):
        return _login_page(request, p, target, error="the sign-in form expired or came from another site; "
                                                      "try again", status_code=403)
    address = client_address(request)
    try:
        throttle(request).check(address)
    except Throttled as exc:
        return _login_page(request, p, target, error=exc.message, status_code=429,
                           headers={"Retry-After": str(exc.retry_after)})
    found = await run_in_threadpool(live_token, p.db, token) if token else None
    if found is None:
        throttle(request).failed(address)
        return _login_page(request, p, target, error="unknown token", status_code=401)
    user, signed_with = found
    session = await run_in_threadpool(
        functools.partial(create_session, p.db, user.id, session_policy(p.settings), token=signed_with))
    response = RedirectResponse(target, status_code=303)
    cookies.set_session_cookie(response, session, request, p.settings)
    return response


@router.post("/ui/logout")
def logout(request: Request, p: PlatformDep) -> Response:
    """Ends the session itself, not just the cookie: a copy of the old cookie gets nothing after this."""
    session = request.cookies.get(COOKIE)
    if session:
        end_session(p.db, session)
    response = RedirectResponse("/ui/login", status_code=303)
    cookies.clear_session_cookie(response, request, p.settings)
    return response


# -- jobs ----------------------------------------------------------------------------------------


MAX_PARAM_COLUMNS = 8  # parameter columns shown when none are chosen: the first, by name


def jobs_data(p: Platform, user: User, *, state: JobState | None, q: str | None, page: int, metric: str | None,
              scope: str | None, sort: str | None = None, cols: str | None = None) -> dict[str, Any]:
    """The table: ``q`` is the search box (``lr>=0.01 tag:baseline owner:alice resnet``: jobs/query.py);
    a bad one lists nothing and says why beside the box."""
    everyone = user.is_admin and scope != "mine"
    error = None
    try:
        query = job_query_service.build_query(states=[state.value] if state else (), sort=sort, search=q)
        listing = job_query_service.list_jobs(p, user, query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
                                              all_users=everyone)
    except ModelyardError as exc:
        if exc.code != ErrorCode.INVALID:
            raise
        error, listing = exc.message, {"jobs": [], "total": 0, "param_names": []}
    latest = jobs_service.latest_metrics(p, user, [j["id"] for j in listing["jobs"]], metric)
    pages = max(1, -(-listing["total"] // PAGE_SIZE))
    chosen = [c for c in (cols or "").split(",") if c]
    return {"jobs": listing["jobs"], "total": listing["total"], "page": page, "pages": pages,
            "metric": metric or "", "metric_names": latest["names"], "latest": latest["latest"],
            "param_names": listing["param_names"], "param_columns": chosen or listing["param_names"][:MAX_PARAM_COLUMNS],
            "sort": sort or "-id", "filter_error": error,
            "filters": {"state": state.value if state else "", "q": q or "", "scope": "all" if everyone else "mine",
                        "sort": sort or "", "cols": cols or ""}}


JobsQuery = dict[str, Any]


def _jobs_query(state: str | None = None, q: Annotated[str | None, Query(max_length=2000)] = None,
                page: Annotated[int, Query(ge=1)] = 1, metric: str | None = None, scope: str | None = None,
                sort: Annotated[str | None, Query(max_length=120)] = None,
                cols: Annotated[str | None, Query(max_length=2000)] = None) -> JobsQuery:
    try:
        parsed = JobState(state) if state else None
    except ValueError:
        raise ModelyardError(ErrorCode.INVALID, f"unknown state {state!r}", field="state") from None
    return {"state": parsed, "q": q, "page": page, "metric": metric, "scope": scope, "sort": sort, "cols": cols}


@router.get("/ui/jobs")
def jobs_page(request: Request, p: PlatformDep, user: UserDep,
              query: Annotated[JobsQuery, Depends(_jobs_query)]) -> Response:
    return respond(request, "jobs.html", jobs_data(p, user, **query), user=user)


@router.get("/ui/jobs/rows")
def jobs_rows(request: Request, p: PlatformDep, user: UserDep,
              query: Annotated[JobsQuery, Depends(_jobs_query)]) -> Response:
    return respond(request, "_job_rows.html", jobs_data(p, user, **query), user=user)


# -- one job -------------------------------------------------------------------------------------


def job_data(p: Platform, user: User, job_id: int, outputs_attempt: int | None = None) -> dict[str, Any]:
    """``outputs_attempt``: whose outputs the page lists (the attempt chooser); None: the job's."""
    job = jobs_service.show(p, user, job_id)
    try:
        outputs = p.outputs.listing(user, job_id, attempt=outputs_attempt)
    except ModelyardError as exc:  # a chosen attempt the job does not have: its own outputs instead
        if exc.code != ErrorCode.NOT_FOUND or outputs_attempt is None:
            raise
        outputs, outputs_attempt = p.outputs.listing(user, job_id), None
    files = outputs["files"]
    waiting = waiting_reason(p, user, job_id) if job["state"] == JobState.QUEUED.value else None
    return {"job": job, "events": jobs_service.events(p, user, job_id)["events"], "outputs": files,
            "run_tags": jobs_service.run_tags(p, job_id),
            "registered": registry_views.of_job(p, user, job_id, job["owner"]),  # "Registered as NAME vN"
            "model": [f for f in files if f["final"]], "other_outputs": [f for f in files if not f["final"]],
            "outputs_attempt": outputs["attempt"],
            "outputs_chosen": outputs_attempt, "outputs_attempts": outputs["attempts"], "waiting": waiting,
            "notebook": output_name(job["command"])}  # a notebook job's executed notebook, framed on its page


def _outputs_attempt(outputs_attempt: Annotated[str | None, Query(max_length=12)] = None) -> int | None:
    """The chooser's attempt; its "latest" sends an empty value, and anything not a number means the job's."""
    return int(outputs_attempt) if outputs_attempt and outputs_attempt.isdigit() and int(outputs_attempt) else None


OutputsAttempt = Annotated[int | None, Depends(_outputs_attempt)]


def _job_or_404(request: Request, p: Platform, user: User, job_id: int, template: str,
                outputs_attempt: int | None = None) -> Response:
    try:
        data = job_data(p, user, job_id, outputs_attempt)
    except ModelyardError as exc:
        if exc.code != ErrorCode.NOT_FOUND:
            raise
        return respond(request, "not_found.html", exc.to_dict(), user=user, status_code=404)
    return respond(request, template, data, user=user)


@router.get("/ui/jobs/{job_id}")
def job_page(request: Request, job_id: int, p: PlatformDep, user: UserDep,
             outputs_attempt: OutputsAttempt) -> Response:
    return _job_or_404(request, p, user, job_id, "job.html", outputs_attempt)


@router.get("/ui/jobs/{job_id}/live")
def job_live(request: Request, job_id: int, p: PlatformDep, user: UserDep,
             outputs_attempt: OutputsAttempt) -> Response:
    return _job_or_404(request, p, user, job_id, "_job_live.html", outputs_attempt)


# -- compare -------------------------------------------------------------------------------------


@router.get("/ui/compare")
def compare_page(request: Request, p: PlatformDep, user: UserDep, ids: str | None = None) -> Response:
    """Jobs side by side (services/compare.py); a job the user may not read is a 404 page, as the API's 404."""
    try:
        wanted = compare_service.parse_ids(ids)
        data = compare_service.compare(p.db, user, wanted)
    except ModelyardError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            return respond(request, "not_found.html", exc.to_dict(), user=user, status_code=404)
        if exc.code != ErrorCode.INVALID:
            raise
        return respond(request, "compare.html", {"error": exc.to_dict()["error"], "ids": []}, user=user,
                       status_code=422)
    return respond(request, "compare.html", {**data, "query": ",".join(map(str, wanted))}, user=user)


# -- create, queue -------------------------------------------------------------------------------


@router.get("/ui/new")
def new_job_page(request: Request, p: PlatformDep, user: UserDep,
                 source: Annotated[int | None, Query(alias="from", ge=1, le=MAX_ID)] = None) -> Response:
    """The new-job form; ``?from=ID``: filled from job ID, for a next round of it (its outputs, new code)."""
    try:
        round_of = job_form.prefill(p.db, user, source) if source else None
    except ModelyardError as exc:
        if exc.code != ErrorCode.NOT_FOUND:
            raise
        return respond(request, "not_found.html", exc.to_dict(), user=user, status_code=404)
    environments = environments_service.listing_view(p, user)["environments"]  # the ones this user may use
    return respond(request, "new.html", {
        "datasets": dataset_choices(p, user), "environments": environments,
        "code_jobs": job_form.code_jobs(p.db, user), "round_of": round_of,
        "metric_presets": sorted(PRESETS)}, user=user)


def dataset_choices(p: Platform, user: User) -> list[dict[str, Any]]:
    """Per dataset ``user`` may read: its name (the latest version at submit) and every version, newest first."""
    return [{"name": o.name, "versions": [m.version for m in reversed(vs)]} for o, vs in p.dataset_access.listing(user)]


# -- datasets ------------------------------------------------------------------------------------


@router.get("/ui/datasets")
def datasets_page(request: Request, p: PlatformDep, user: UserDep) -> Response:
    return respond(request, "datasets.html", p.dataset_access.listing_view(user), user=user)


@router.get("/ui/datasets/{name}")
def dataset_page(request: Request, name: str, p: PlatformDep, user: UserDep) -> Response:
    try:
        data = p.dataset_access.name_view(name, user)
    except ModelyardError as exc:
        if exc.code not in (ErrorCode.NOT_FOUND, ErrorCode.INVALID):
            raise
        return respond(request, "not_found.html", exc.to_dict(), user=user, status_code=404)
    return respond(request, "dataset.html", data, user=user)


@router.get("/ui/queue")
def queue_page(request: Request, p: PlatformDep, user: UserDep) -> Response:
    return respond(request, "queue.html", queue_view(p, user), user=user)


@router.get("/ui/queue/panel")
def queue_panel(request: Request, p: PlatformDep, user: UserDep) -> Response:
    return respond(request, "_queue.html", queue_view(p, user), user=user)


# -- notices, settings ---------------------------------------------------------------------------


@router.get("/ui/notices")
def notices_page(request: Request, p: PlatformDep, user: UserDep) -> Response:
    return respond(request, "notices.html", notices.notices_of(p.db, user, limit=200), user=user)


@router.get("/ui/notices/list")
def notices_list(request: Request, p: PlatformDep, user: UserDep) -> Response:
    return respond(request, "_notices.html", notices.notices_of(p.db, user, limit=200), user=user)


@router.get("/ui/settings")
def settings_page(request: Request, p: PlatformDep, user: UserDep) -> Response:
    return respond(request, "settings.html", notices.profile(p.db, user, email_enabled=p.mailer is not None),
                   user=user)


# -- admin ---------------------------------------------------------------------------------------


@router.get("/ui/admin/disk")
def disk_page(request: Request, p: PlatformDep, user: UserDep,
              page: Annotated[int, Query(ge=1)] = 1, refresh: bool = False) -> Response:
    if not user.is_admin:
        err = ModelyardError(ErrorCode.FORBIDDEN, "only an admin may see the disk page")
        return respond(request, "forbidden.html", err.to_dict(), user=user, status_code=403)
    data = p.cleanup.disk(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, refresh=refresh)
    data.update(page=page, pages=max(1, -(-data["jobs_total"] // PAGE_SIZE)))
    return respond(request, "admin_disk.html", data, user=user)
