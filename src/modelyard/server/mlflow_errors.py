"""Errors in MLflow's own form, ``{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}``, so the
MLflow client's messages read right: ``MlflowRoute`` answers every ModelyardError (a dependency's
too: a bad token) and every request validation error of its routes so.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelyard.db.experiments import ExperimentExists
from modelyard.db.registry import RegisteredModelExists
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.throttle import Throttled

# our code -> MLflow's code and HTTP status (mlflow/exceptions.py ERROR_CODE_TO_HTTP_STATUS); the client
# retries 429 and 5xx, so nothing a retry cannot mend answers one
MLFLOW_CODES: dict[ErrorCode, tuple[str, int]] = {
    ErrorCode.INVALID: ("INVALID_PARAMETER_VALUE", 400),
    ErrorCode.UNSATISFIABLE: ("INVALID_PARAMETER_VALUE", 400),
    ErrorCode.NOT_FOUND: ("RESOURCE_DOES_NOT_EXIST", 404),
    ErrorCode.GONE: ("RESOURCE_DOES_NOT_EXIST", 404),
    ErrorCode.UNAUTHENTICATED: ("UNAUTHENTICATED", 401),
    ErrorCode.FORBIDDEN: ("PERMISSION_DENIED", 403),
    ErrorCode.CONFLICT: ("INVALID_STATE", 400),
    ErrorCode.TOO_LARGE: ("RESOURCE_EXHAUSTED", 413),
    ErrorCode.THROTTLED: ("REQUEST_LIMIT_EXCEEDED", 429),
    ErrorCode.UNAVAILABLE: ("TEMPORARILY_UNAVAILABLE", 503),
    ErrorCode.DISK_FULL: ("TEMPORARILY_UNAVAILABLE", 503),
}


def mlflow_error(exc: ModelyardError) -> JSONResponse:
    code, status = MLFLOW_CODES.get(exc.code, ("INTERNAL_ERROR", 500))
    if isinstance(exc, (ExperimentExists, RegisteredModelExists)):
        code = "RESOURCE_ALREADY_EXISTS"
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
    return JSONResponse({"error_code": code, "message": exc.message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError | ValidationError) -> str:
    first = next(iter(exc.errors()), {})
    loc = first.get("loc", ())
    # a request's first place is where it was read from ("body", "query"); a model's is its field
    where = ".".join(str(x) for x in (loc[1:] if isinstance(exc, RequestValidationError) else loc)) or "request"
    return f"{where}: {first.get('msg', 'invalid input')}"


class MlflowRoute(APIRoute):
    """A route whose errors leave in MLflow's form (set as an APIRouter's ``route_class``)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except ModelyardError as exc:
                return mlflow_error(exc)
            except (RequestValidationError, ValidationError) as exc:
                return mlflow_error(ModelyardError(ErrorCode.INVALID, _validation_message(exc)))
            except StarletteHTTPException as exc:  # the body limit's 413, raised as the body is read
                code = ErrorCode.TOO_LARGE if exc.status_code == 413 else ErrorCode.INVALID
                response = mlflow_error(ModelyardError(code, str(exc.detail)))
                response.status_code = exc.status_code
                return response

        return answer
