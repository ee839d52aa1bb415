"""Error types of fastserve: a closed set of codes, no HTTP and no torch.

Core code raises these; each front-end maps ``code`` to an HTTP status and
formats the body in its own API's shape (``frontends/_base.py``).
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ErrorCode(enum.Enum):
    INVALID_ARGUMENT = "invalid_argument"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    ALREADY_EXISTS = "already_exists"
    TOO_LARGE = "too_large"
    INTERNAL = "internal"
    UNIMPLEMENTED = "unimplemented"
    UNAVAILABLE = "unavailable"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    DEADLINE_EXCEEDED = "deadline_exceeded"


class FastServeError(Exception):
    """Base of every error fastserve reports to a client (HTTP 500 unless overridden)."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(FastServeError, ValueError):
    """Malformed or mismatched input (HTTP 400)."""

    code = ErrorCode.INVALID_ARGUMENT


class CodecError(InvalidInputError):
    """A binary tensor body whose lengths do not add up (HTTP 400)."""


class UnauthorizedError(FastServeError):
    """Missing or wrong bearer token (HTTP 401)."""

    code = ErrorCode.UNAUTHENTICATED


class ForbiddenError(FastServeError):
    """A feature the operator has not enabled, or a path outside the repository (HTTP 403)."""

    code = ErrorCode.PERMISSION_DENIED


class ModelNotFoundError(FastServeError, LookupError):
    """Unknown model (HTTP 404)."""

    code = ErrorCode.NOT_FOUND


class VersionNotFoundError(ModelNotFoundError):
    """Known model, unknown version (HTTP 404)."""


class RouteNotFoundError(FastServeError, LookupError):
    """No endpoint at this path (HTTP 404)."""

    code = ErrorCode.NOT_FOUND


class MethodNotAllowedError(FastServeError):
    """The path exists but not for this method (HTTP 405 + ``Allow``: the ``allow`` ones)."""

    code = ErrorCode.METHOD_NOT_ALLOWED

    def __init__(self, message: str, allow: str = "") -> None:
        super().__init__(message)
        self.allow = allow


class AlreadyExistsError(FastServeError):
    """The model is already loaded (HTTP 409)."""

    code = ErrorCode.ALREADY_EXISTS


class RequestTooLargeError(FastServeError):
    """Body over ``--max-request-size`` (HTTP 413)."""

    code = ErrorCode.TOO_LARGE


class BackendError(FastServeError):
    """The model itself raised (HTTP 500)."""

    code = ErrorCode.INTERNAL


class UnsupportedError(FastServeError):
    """Not supported for this model (HTTP 501)."""

    code = ErrorCode.UNIMPLEMENTED


class ModelNotReadyError(FastServeError):
    """Model loading, failed or unloading; server draining (HTTP 503 + Retry-After)."""

    code = ErrorCode.UNAVAILABLE


class QueueFullError(FastServeError):
    """A model version's queue is full (HTTP 503 + Retry-After)."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(FastServeError, TimeoutError):
    """The request waited past ``timeout_ms`` and never ran (HTTP 504)."""

    code = ErrorCode.DEADLINE_EXCEEDED


class ConfigError(FastServeError):
    """A model folder or config.toml the loader rejects; the model is FAILED."""
