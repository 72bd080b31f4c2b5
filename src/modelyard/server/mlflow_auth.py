"""Who calls the MLflow-compatible API (README "MLflow"), as a FastAPI dependency.

The MLflow client sends ``MLFLOW_TRACKING_TOKEN`` as ``Authorization: Bearer``, or
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` as Basic (the password is then the token).
The token is a user's API token, or a job's run token (jobs/run_token.py), which speaks for that
job's own run (and finds or creates its owner's experiment to put that run in, as
``mlflow.set_experiment`` does) and nothing else; the web UI's session cookie stands in as it does for ``/api/v1``.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.auth import (
    client_address, current_user, get_platform, throttle, user_for_api_token,
)
from modelyard.server.platform import Platform
from modelyard.db.records import User
from modelyard.db.users import kept_run_token, kept_token_user, user_for_run_token
from modelyard.jobs.run_token import PREFIX as RUN_TOKEN_PREFIX

# where the MLflow client's tracking API is served (server/routes_mlflow.py)
MLFLOW_PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/")


@dataclass(frozen=True)
class Caller:
    """A user, or a job's MLflow client (``job_id`` set: it may reach that run only)."""
    user: User
    job_id: int | None = None
    attempt_id: int | None = None

    @property
    def is_job(self) -> bool:
        return self.job_id is not None

    def check_run(self, job_id: int) -> None:
        """A job's client reaches its own run; any other answers as a run that does not exist."""
        if self.job_id is not None and job_id != self.job_id:
            raise ModelyardError(ErrorCode.NOT_FOUND, f"run {job_id} not found")

    def check_user_call(self, what: str) -> None:
        """What only a user may do (create runs; rename, delete, restore or tag experiments). A job's
        token finds and creates its owner's experiments only to put its run in one (services/experiments.py)."""
        if self.job_id is not None:
            raise ModelyardError(ErrorCode.FORBIDDEN, f"a job's run token may not {what}; it logs to its own run "
                                 f"(run {self.job_id}) only")


def mlflow_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if not header:
        return None
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            _user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            password = ""
        if password:
            return password
    raise ModelyardError(ErrorCode.UNAUTHENTICATED, "the Authorization header must be Bearer <token> "
                         "(MLFLOW_TRACKING_TOKEN) or Basic with the token as password")


async def mlflow_caller(request: Request, platform: Platform = Depends(get_platform)) -> Caller:
    """The caller; a token just verified is answered on the loop (an MLflow loop's next call), any
    other lookup goes to the threadpool, as it reads the database."""
    token = mlflow_token(request)
    if token is not None:
        throttle(request).check(client_address(request))
        if token.startswith(RUN_TOKEN_PREFIX):
            found = kept_run_token(platform.db, token)
            if found is not None:
                return Caller(*found)
        else:
            user = kept_token_user(platform.db, token)
            if user is not None:
                return Caller(user)
    return await run_in_threadpool(_mlflow_caller, request, platform, token)


def _mlflow_caller(request: Request, platform: Platform, token: str | None) -> Caller:
    if token is None:
        return Caller(current_user(request, platform))  # the session cookie, or a clear 401
    if token.startswith(RUN_TOKEN_PREFIX):
        address = client_address(request)
        throttle(request).check(address)
        found = user_for_run_token(platform.db, token)
        if found is None:
            throttle(request).failed(address)
            raise ModelyardError(ErrorCode.UNAUTHENTICATED, "unknown run token, or its attempt has ended")
        user, job_id, attempt_id = found
        return Caller(user, job_id, attempt_id)
    return Caller(user_for_api_token(request, platform, token))
