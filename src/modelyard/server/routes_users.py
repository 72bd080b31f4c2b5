"""Users as an admin manages them, and a user's own quota and usage: ``/users/...``, ``/me/usage``.

Thin adapters over services/users.py, which decides who may do what: every
``/users`` route is an admin's (403 for anyone else); ``/me/usage`` answers
for the caller only.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from modelyard.server.api_schema import AUTHED, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.server.serialize import token_to_dict
from modelyard.db.records import User

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]
UserName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]


class QuotaBody(BaseModel):
    """The quotas to change; one left out stays, null clears it (the server default applies)."""

    model_config = ConfigDict(extra="forbid")
    gpus: int | None = Field(default=None, ge=0, le=1_000_000)
    cpus: float | None = Field(default=None, ge=0, le=1e9)
    queued: int | None = Field(default=None, ge=0, le=1_000_000_000)


class AdminBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    admin: bool


@router.get("/users", responses=errors(*AUTHED, 403))
def users(p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return {"users": [a.to_dict() for a in p.users.accounts(user)],
            "fairshare_halflife": p.settings.fairshare_halflife}


@router.get("/users/{name}", responses=errors(*AUTHED, 403, 404))
def show_user(name: UserName, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return p.users.account(user, name).to_dict()


@router.put("/users/{name}/quota", responses=errors(*AUTHED, 403, 404))
def set_quota(name: UserName, body: QuotaBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    account = p.users.set_quota(user, name, **body.model_dump(exclude_unset=True))
    p.scheduler.wake()  # a raised quota may let a waiting job start now
    return account.to_dict()


@router.put("/users/{name}/admin", responses=errors(*AUTHED, 403, 404, 409))
def set_admin(name: UserName, body: AdminBody, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return p.users.set_admin(user, name, body.admin).to_dict()


@router.get("/users/{name}/tokens", responses=errors(*AUTHED, 403, 404))
def user_tokens(name: UserName, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return {"tokens": [token_to_dict(t) for t in p.users.tokens(user, name)]}


@router.delete("/users/{name}/tokens/{token_id}", responses=errors(*AUTHED, 403, 404))
def revoke_user_token(name: UserName, token_id: Annotated[int, Path(ge=1, le=2**62)], p: PlatformDep,
                      user: UserDep) -> dict[str, Any]:
    return {"revoked": token_to_dict(p.users.revoke_token(user, name, token_id))}


@router.get("/me/usage", responses=errors(*AUTHED))
def my_usage(p: PlatformDep, user: UserDep) -> dict[str, Any]:
    """The caller's own quota (over the server default) and what they use."""
    return {**p.users.my_account(user).to_dict(), "fairshare_halflife": p.settings.fairshare_halflife}
