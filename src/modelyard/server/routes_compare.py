"""Compare routes: jobs side by side (services/compare.py), as JSON or as CSV.

- ``GET /compare?ids=3,5,7``: params, spec differences, metrics (last, best), durations;
  ``download=true`` sends the same JSON as a file (``compare-3-5-7.json``).
- ``GET /compare.csv?ids=3,5,7``: one row per job.
"""
from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from modelyard.db.records import User
from modelyard.server.api_schema import AUTHED, ID_LIST_PATTERN, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.services import compare as service

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]
# The pattern is documented, not enforced here: service.parse_ids checks the ids and names what is
# wrong with them (pydantic would only say the pattern did not match). The bound keeps a request small.
IdsQuery = Annotated[str, Query(max_length=2000, description=f"job ids, e.g. 3,5,7 (at most {service.MAX_IDS})",
                                json_schema_extra={"pattern": ID_LIST_PATTERN})]
COMPARE_JSON = {200: {"description": "the jobs side by side",
                      "content": {"application/json": {"schema": {"type": "object"}}}}}
COMPARE_CSV = {200: {"description": "one row per job", "content": {"text/csv": {"schema": {"type": "string"}}}}}


def _attachment(ids: list[int], ext: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="compare-{"-".join(map(str, ids))}.{ext}"'}


@router.get("/compare", responses={**COMPARE_JSON, **errors(*AUTHED, 404)})
def compare(p: PlatformDep, user: UserDep, ids: IdsQuery = "", download: bool = False) -> Response:
    wanted = service.parse_ids(ids)
    data: dict[str, Any] = service.compare(p.db, user, wanted)
    headers = _attachment(wanted, "json") if download else None
    return Response(orjson.dumps(data), media_type="application/json", headers=headers)


@router.get("/compare.csv", response_class=Response, responses={**COMPARE_CSV, **errors(*AUTHED, 404)})
def compare_csv(p: PlatformDep, user: UserDep, ids: IdsQuery = "") -> Response:
    wanted = service.parse_ids(ids)
    text = service.to_csv(service.compare(p.db, user, wanted))
    return Response(text, media_type="text/csv; charset=utf-8", headers=_attachment(wanted, "csv"))
