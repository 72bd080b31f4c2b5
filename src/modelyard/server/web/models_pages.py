"""The model registry's pages: ``/ui/models`` (one's own registered models, paged) and
``/ui/models/{name}`` (its versions, their aliases, source jobs and files). Both read through
services/registry_views.py, as ``/api/v1/models`` does; another user's model is a 404 page, as the
API answers 404 (an admin opens anyone's with ``?owner=``). A version's files download through the
MLflow artifact routes, streamed, with the page's session."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.web.pages import PAGE_SIZE, PlatformDep, UserDep
from modelyard.server.web.render import respond
from modelyard.services import registry_views

router = APIRouter(include_in_schema=False)


@router.get("/ui/models")
def models_page(request: Request, p: PlatformDep, user: UserDep,
                page: Annotated[int, Query(ge=1, le=10**6)] = 1) -> Response:
    data = registry_views.listing(p, user, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    data.update(page=page, pages=max(1, -(-data["total"] // PAGE_SIZE)))
    return respond(request, "models.html", data, user=user)


@router.get("/ui/models/{name}")
def model_page(request: Request, name: str, p: PlatformDep, user: UserDep,
               owner: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    try:
        data = registry_views.show(p, user, name, owner=owner)
    except ModelyardError as exc:
        if exc.code not in (ErrorCode.NOT_FOUND, ErrorCode.INVALID):
            raise
        return respond(request, "not_found.html", exc.to_dict(), user=user, status_code=404)
    return respond(request, "model.html", data, user=user)
