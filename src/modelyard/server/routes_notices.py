"""A user's notices and how they are told of their jobs: ``/notices``, ``/profile``.

Each route reaches only the caller's own notices (another's answers 404, as
one that does not exist) and own profile; an admin may read and set another
user's email with ``?user=NAME``, never their choices.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from modelyard.server.api_schema import AUTHED, MAX_ID, USER_NAME_PATTERN, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.services import notices as service
from modelyard.db.records import User
from modelyard.jobs.notify import MAX_EMAIL

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]
UserQuery = Annotated[str | None, Query(alias="user", max_length=100, pattern=USER_NAME_PATTERN,
                                        description="another user's (admins only); none: the caller's own")]


@router.get("/notices", responses=errors(*AUTHED))
def list_notices(p: PlatformDep, user: UserDep, unread: bool = False,
                 limit: Annotated[int, Query(ge=0, le=500)] = 50) -> dict[str, Any]:
    """The caller's notices, newest first, and how many are unread."""
    return service.notices_of(p.db, user, unread=unread, limit=limit)


@router.post("/notices/read-all", responses=errors(*AUTHED))
def read_all(p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return service.mark_all_read(p.db, user)


@router.post("/notices/{notice_id}/read", responses=errors(*AUTHED, 404))
def read_one(notice_id: Annotated[int, Path(ge=1, le=MAX_ID)], p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return service.mark_read(p.db, user, notice_id)


class ProfileChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # "" or null: no email
    email: str | None = Field(default=None, max_length=MAX_EMAIL)
    # event -> the channels it is told by (notice, email, webhook); [] for none; events not named keep theirs
    notify: dict[str, list[str]] | None = Field(default=None, max_length=20)


@router.get("/profile", responses=errors(*AUTHED, 403, 404))
def get_profile(p: PlatformDep, user: UserDep, other: UserQuery = None) -> dict[str, Any]:
    """The caller's email and, per event, the channels it is told by (``?user=NAME``: admins only)."""
    return service.profile(p.db, user, email_enabled=p.mailer is not None, name=other)


@router.patch("/profile", responses=errors(*AUTHED, 403, 404))
def change_profile(body: ProfileChange, p: PlatformDep, user: UserDep, other: UserQuery = None) -> dict[str, Any]:
    """Change the caller's email and choices; an admin may change another's email (``?user=NAME``)."""
    email = body.email if "email" in body.model_fields_set else service.UNSET
    return service.update_profile(p.db, user, email_enabled=p.mailer is not None, email=email,
                                  notify_changes=body.notify, name=other)
