"""A user's API tokens and webhook secret: ``/tokens``, ``/webhook-secret``.

A user creates, lists and revokes their own tokens; an admin may list
(``?all=true``) and revoke anyone's. Another user's token answers 404, as any
other object of theirs does. A token is shown in clear once, in the answer
that creates it; listings show its first characters (``prefix``).
"""
from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.server.serialize import token_to_dict
from modelyard.db.records import User
from modelyard.db.users import add_named_token, list_tokens, revoke_token, webhook_secret

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]
MAX_TTL = 10 * 365 * 86400  # ten years: past that "never" says what is meant


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", max_length=100)
    # seconds until it expires; omitted: the server's MODELYARD_TOKEN_TTL; 0: never
    expires_in: int | None = Field(default=None, ge=0, le=MAX_TTL)


@router.post("/tokens", status_code=201)
def create_token(body: NewToken, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    ttl = p.settings.token_ttl if body.expires_in is None else body.expires_in
    token, secret = add_named_token(p.db, user.id, name=body.name, expires_at=time.time() + ttl if ttl else None)
    return {"token": secret, **token_to_dict(token)}


@router.get("/tokens")
def tokens(p: PlatformDep, user: UserDep, all: bool = False) -> dict[str, Any]:
    if all and not user.is_admin:
        raise ModelyardError(ErrorCode.FORBIDDEN, "only an admin may list everyone's tokens", field="all")
    return {"tokens": [token_to_dict(t) for t in list_tokens(p.db, user_id=None if all else user.id)]}


@router.delete("/tokens/{ref}")
def revoke(ref: Annotated[str, Path(min_length=1, max_length=40, description="the token's id or prefix")],
           p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return {"revoked": token_to_dict(revoke_token(p.db, ref, user=user))}


@router.get("/webhook-secret")
def get_webhook_secret(p: PlatformDep, user: UserDep) -> dict[str, Any]:
    """The key the server signs this user's job webhooks with (made on first use)."""
    return {"secret": webhook_secret(p.db, user.id), "header": "X-Modelyard-Signature", "algorithm": "hmac-sha256"}


@router.post("/webhook-secret/rotate")
def rotate_webhook_secret(p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return {"secret": webhook_secret(p.db, user.id, rotate=True), "header": "X-Modelyard-Signature",
            "algorithm": "hmac-sha256"}
