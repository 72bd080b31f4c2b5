"""Bearer-token authentication as a FastAPI dependency."""
from __future__ import annotations

from fastapi import Depends, Request

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.platform import Platform
from modelyard.store.records import User
from modelyard.store.users import user_for_token


def get_platform(request: Request) -> Platform:
    return request.app.state.platform


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ModelyardError(ErrorCode.UNAUTHENTICATED, "missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


def current_user(request: Request, platform: Platform = Depends(get_platform)) -> User:
    user = user_for_token(platform.db, bearer_token(request))
    if user is None:
        raise ModelyardError(ErrorCode.UNAUTHENTICATED, "unknown token")
    return user


def admin_user(user: User = Depends(current_user)) -> User:
    if not user.is_admin:
        raise ModelyardError(ErrorCode.FORBIDDEN, "only an admin may do this")
    return user
