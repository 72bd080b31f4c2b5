"""Named environment routes: create, list, show, remove (docs/api.md "Environments")."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from modelyard.jobs.environments import EnvironmentSpec
from modelyard.server.api_schema import AUTHED, NameParam, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.server.serialize import environment_to_dict
from modelyard.services import environments as environments_service
from modelyard.db import environments as store_environments
from modelyard.db.records import User

router = APIRouter(responses=errors(*AUTHED))
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]


@router.post("/environments", status_code=201, responses=errors(409))
def create(body: EnvironmentSpec, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return environment_to_dict(store_environments.create_environment(p.db, user, body))


@router.get("/environments")
def list_all(p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return environments_service.listing_view(p, user)


@router.get("/environments/{name}", responses=errors(404))
def show(name: NameParam, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return environment_to_dict(store_environments.get_environment(p.db, name, user=user))


@router.delete("/environments/{name}", responses=errors(403, 404))
def remove(name: NameParam, p: PlatformDep, user: UserDep) -> dict[str, Any]:
    return environment_to_dict(store_environments.remove_environment(p.db, name, user=user))
