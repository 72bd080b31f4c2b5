"""A user's stored secrets: set (PUT), list, show, remove. A value goes in and never comes out.

Every route is scoped to the caller: another user's secret answers 404 whatever
its name, and no answer holds a value, only names and dates.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, SecretStr

from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.server.serialize import secret_to_dict
from modelyard.db import secrets as store_secrets
from modelyard.db.records import User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: SecretStr  # never repr'd or logged in clear


@router.put("/secrets/{name}")
def set_secret(name: str, body: SecretBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return secret_to_dict(p.set_secret(user, name, body.value.get_secret_value()))


@router.get("/secrets")
def list_secrets(p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return {"secrets": [secret_to_dict(s) for s in store_secrets.list_secrets(p.db, user.id)]}


@router.get("/secrets/{name}")
def show_secret(name: str, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return secret_to_dict(p.secret_info(user, name))


@router.delete("/secrets/{name}", status_code=204)
def remove_secret(name: str, p: PlatformDep, user: UserDep) -> Response:
    p.remove_secret(user, name)
    return Response(status_code=204)
