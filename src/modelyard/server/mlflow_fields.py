"""What every MLflow route reads and answers with (server/routes_mlflow*.py): a request's parameters
as the client sends them (a POST's JSON object or a GET's query string, read the same way), the
dependencies of a route, and its JSON answer. Kept apart so those route modules share it without
importing one another.
"""
from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.auth import get_platform
from modelyard.server.mlflow_auth import Caller, mlflow_caller
from modelyard.server.platform import Platform
from modelyard.services import experiments


class Fields:
    """A request's parameters: a POST's JSON object, or a GET's query string, read the same way."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise ModelyardError(ErrorCode.INVALID, f"missing value for required parameter {name!r}", field=name)
            return None
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, (dict, list, bool)):
            raise ModelyardError(ErrorCode.INVALID, f"parameter {name!r} must be a string", field=name)
        return str(value)

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.text(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ModelyardError(ErrorCode.INVALID, f"parameter {name!r} must be an integer, not {value[:40]!r}",
                                 field=name) from None

    def items(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            value = [value] if isinstance(value, (str, dict)) else None
        if value is None:
            raise ModelyardError(ErrorCode.INVALID, f"parameter {name!r} must be a list", field=name)
        return value

    def tags(self, name: str = "tags") -> dict[str, Any]:
        out = {}
        for tag in self.items(name):
            if not isinstance(tag, dict) or not isinstance(tag.get("key"), str):
                raise ModelyardError(ErrorCode.INVALID, f"each of {name} is {{key, value}}", field=name)
            out[tag["key"]] = tag.get("value", "")
        return out

    def view(self, name: str) -> str:
        value = self.text(name) or "ACTIVE_ONLY"
        names = {"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}
        value = names.get(value, value)
        if value not in experiments.VIEW_STAGES:
            raise ModelyardError(ErrorCode.INVALID, f"{name} is ACTIVE_ONLY, DELETED_ONLY or ALL, not {value!r}",
                                 field=name)
        return value


async def fields(request: Request) -> Fields:
    if request.method == "GET":
        q = request.query_params
        return Fields({k: (q.getlist(k) if len(q.getlist(k)) > 1 else q[k]) for k in q})
    raw = await request.body()
    if not raw.strip():
        return Fields({})
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ModelyardError(ErrorCode.INVALID, f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ModelyardError(ErrorCode.INVALID, "the body must be a JSON object")
    return Fields(data)


PlatformDep = Annotated[Platform, Depends(get_platform)]
CallerDep = Annotated[Caller, Depends(mlflow_caller)]
FieldsDep = Annotated[Fields, Depends(fields)]


def ok(out: dict[str, Any] | None = None) -> Response:
    return Response(orjson.dumps(out or {}), media_type="application/json")
