"""The model registry, read only, for the CLI (``modelyard models``): the caller's registered models and
one with its versions. The MLflow client's own API is routes_mlflow_registry.py; the work is in
services/registry_views.py."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from modelyard.db.records import User
from modelyard.server.api_models import RegisteredModelDetail, RegisteredModelList
from modelyard.server.api_schema import AUTHED, USER_NAME_PATTERN, OffsetQuery, errors
from modelyard.server.auth import current_user, get_platform
from modelyard.server.platform import Platform
from modelyard.services import registry_views

router = APIRouter()
PlatformDep = Annotated[Platform, Depends(get_platform)]
UserDep = Annotated[User, Depends(current_user)]
ModelName = Annotated[str, Path(min_length=1, max_length=250, description="a registered model's name")]
OwnerQuery = Annotated[str | None, Query(pattern=USER_NAME_PATTERN, description="an admin: whose model it is")]


@router.get("/models", response_model=RegisteredModelList, responses=errors(*AUTHED))
def list_models(p: PlatformDep, user: UserDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                offset: OffsetQuery = 0) -> dict[str, Any]:
    """The caller's registered models, the most recently changed first."""
    return registry_views.listing(p, user, limit=limit, offset=offset)


@router.get("/models/{name}", response_model=RegisteredModelDetail, responses=errors(*AUTHED, 404))
def show_model(name: ModelName, p: PlatformDep, user: UserDep, owner: OwnerQuery = None) -> dict[str, Any]:
    """The registered model, its versions (aliases, source job, files), newest first."""
    return registry_views.show(p, user, name, owner=owner)
