"""The one domain exception and its codes.

    ModelyardError(code, message, field=None)
        code -> HTTP status in ``HTTP_STATUS`` (the server's single handler uses it)

Raised anywhere below the API; the server turns it into a JSON error
``{"error": {"code", "message", "field"}}`` and the CLI into one line on stderr.
"""
from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    INVALID = "invalid"  # bad input: names the field and the reason
    NOT_FOUND = "not_found"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"  # a state change that is not allowed now
    UNSATISFIABLE = "unsatisfiable"  # asks for more than the platform has
    TOO_LARGE = "too_large"
    GONE = "gone"  # the thing asked about has ended for good (a report for an ended attempt)
    UNAVAILABLE = "unavailable"  # a backing service (database, storage) failed
    THROTTLED = "throttled"  # too many failed sign-ins or bad tokens from one address; Retry-After says when
    DISK_FULL = "disk_full"  # the disk of MODELYARD_HOME (or the database server's) has no space left


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.CONFLICT: 409,
    ErrorCode.UNSATISFIABLE: 422,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.GONE: 410,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.THROTTLED: 429,
    # 503, not 507: a full disk is a backing service failing, retried like one (the
    # supervisor's reporter and every client retry a 503), and the OpenAPI documents 503
    ErrorCode.DISK_FULL: 503,
}


class ModelyardError(Exception):
    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code.value, "message": self.message, "field": self.field}}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def not_found(what: str) -> ModelyardError:
    return ModelyardError(ErrorCode.NOT_FOUND, f"{what} not found")
