"""A notebook job's executed notebook, rendered (``/ui/jobs/{id}/notebook``), for the job page's frame.

The document is the job's, so it is never trusted: services/notebooks.py sanitises it,
and it is answered with its own policy (``NOTEBOOK_CSP``: no script, no request, a
sandbox) in place of the UI's, framed only by the UI's own pages. Errors come back as
a short document of the same kind, for the frame to show.
"""
from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.api_schema import MAX_ID
from modelyard.server.web.pages import PlatformDep, UserDep
from modelyard.services.notebooks import NOTEBOOK_CSP, NotebookService

router = APIRouter(include_in_schema=False)
HEADERS = {"content-security-policy": NOTEBOOK_CSP, "x-frame-options": "SAMEORIGIN",
           "cache-control": "private, no-cache"}
HANDLED = (ErrorCode.NOT_FOUND, ErrorCode.TOO_LARGE, ErrorCode.INVALID)


@router.get("/ui/jobs/{job_id}/notebook")
def notebook_page(request: Request, job_id: int, p: PlatformDep, user: UserDep,
                  attempt: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Response:
    as_json = request.query_params.get("format") == "json"
    try:
        data = NotebookService(p.outputs).render(user, job_id, attempt=attempt)
    except ModelyardError as exc:
        if exc.code not in HANDLED:
            raise
        if as_json:
            return JSONResponse(exc.to_dict(), status_code=exc.http_status)
        return HTMLResponse(_message(exc.message), status_code=exc.http_status, headers=HEADERS)
    if as_json:
        return JSONResponse(data, headers=HEADERS)
    return HTMLResponse(data["html"], headers=HEADERS)


def _message(text: str) -> str:
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Notebook</title></head>"
            f"<body style=\"font-family: sans-serif; color: #555\"><p>{escape(text)}</p></body></html>")
