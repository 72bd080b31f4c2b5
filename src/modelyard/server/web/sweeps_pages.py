"""The sweeps pages: ``/ui/sweeps`` (one's own) and ``/ui/sweeps/{id}`` (trials, best, a scatter of
each parameter against the objective). Both read through services/sweeps.py, as the API does; another
user's sweep is a 404 page, as the API answers 404."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.api_schema import MAX_ID
from modelyard.server.web.pages import PlatformDep, UserDep
from modelyard.server.web.render import respond
from modelyard.services import sweeps as sweeps_service

router = APIRouter(include_in_schema=False)


@router.get("/ui/sweeps")
def sweeps_page(request: Request, p: PlatformDep, user: UserDep) -> Response:
    return respond(request, "sweeps.html", sweeps_service.listing(p, user, limit=200), user=user)


# bounded as the API's is: a number past what the database holds is a 422, not a 500
SweepId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/ui/sweeps/{sweep_id}")
def sweep_page(request: Request, sweep_id: SweepId, p: PlatformDep, user: UserDep) -> Response:
    try:
        data = sweeps_service.show(p, user, sweep_id)
    except ModelyardError as exc:
        if exc.code != ErrorCode.NOT_FOUND:
            raise
        return respond(request, "not_found.html", exc.to_dict(), user=user, status_code=404)
    return respond(request, "sweep.html", data, user=user)
