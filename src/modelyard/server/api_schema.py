"""What the OpenAPI promises beyond the routes' own signatures: the one error shape, the
statuses each route may answer, and bounded types for path and query numbers and names.

Every route declares its error statuses with ``errors(...)``, so the OpenAPI lists
each status the route can answer, all with the ``ErrorResponse`` schema; the fuzz
test (``tests/security/test_fuzz_api.py``) holds the routes to it. Numbers in paths
and queries are bounded here so that no value reaches the database as an integer
it cannot hold (a 422, not an ``OverflowError``).
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel

# Ids and offsets: exact as a JSON number (JavaScript's safe integers) and within a 64-bit column.
MAX_ID = 2**53
# Attempt numbers and other small counts: within a 32-bit column.
MAX_SMALL = 2**31 - 1
# A user's or dataset's name: what `store.users.create_user` and `datasets.names` accept.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
# A user's name (`store.users.create_user` also wants a letter or digit in it).
USER_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"
# A comma-separated list of job ids (ASCII digits only: int() also reads "²" and "٣").
ID_LIST_PATTERN = r"^([0-9]{1,16}(,[0-9]{1,16})*,?)?$"


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: list[ErrorDetail] | None = None  # every problem found, for bad input


class ErrorResponse(BaseModel):
    """Every error: ``{"error": {"code", "message", "field"}}``."""

    error: ErrorBody


WHY: dict[int, str] = {
    401: "No bearer token, or an unknown one",
    403: "Only an admin may do this",
    404: "No such object, or it is another user's",
    409: "Not allowed in the object's current state, or it exists already",
    413: "The request is over a limit (the message names it)",
    422: "Bad input: the message names the field and the reason",
    429: "Too many bad tokens or failed sign-ins from this address: wait Retry-After seconds",
    503: "A backing service (the database, the artifact store) failed, or the disk is full (code disk_full); try again",
}
# What any route behind a bearer token may answer: no or a bad token, bad input, over the
# body limit, throttled after bad tokens from the same address, the database down.
AUTHED = (401, 413, 422, 429, 503)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the shared error schema."""
    return {s: {"model": ErrorResponse, "description": WHY[s]} for s in sorted(set(statuses))}


JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="a job's id")]
AttemptQuery = Annotated[int | None, Query(ge=0, le=MAX_SMALL, description="attempt number; 0 or none: the latest")]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_ID)]
NodeQuery = Annotated[int | None, Query(ge=0, le=63, description="only this node rank's lines; none: every node's")]
NameParam = Annotated[str, Path(pattern=NAME_PATTERN, max_length=100)]
