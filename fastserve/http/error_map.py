"""The one place an exception becomes an HTTP answer: status, extra headers, message.

Every HTTP answer to an error goes through ``error_answer`` (Triton's HttpCodeFromError):
the transport's, ``management.apply``'s (the --workers parent's replay) and the workers
parent's own. Each API then shapes the body (``{"error": ...}``, TorchServe's shape).
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import ErrorCode, FastServeError, MethodNotAllowedError

STATUS_BY_CODE = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.RESOURCE_EXHAUSTED: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
}
RETRY_AFTER_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.RESOURCE_EXHAUSTED})
RETRY_AFTER_SECONDS = b"1"


class ErrorAnswer(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]  # Retry-After, Allow, WWW-Authenticate as they apply
    message: str


def status_for(exc: BaseException) -> int:
    """HTTP status for any exception: FastServeError by code, anything else 500."""
    if isinstance(exc, FastServeError):
        return STATUS_BY_CODE[exc.code]
    return 500


def error_answer(exc: BaseException) -> ErrorAnswer:
    """Status, headers and message for any exception (anything not a FastServeError: 500)."""
    if not isinstance(exc, FastServeError):
        return ErrorAnswer(500, [], f"internal error: {type(exc).__name__}: {exc}")
    code = exc.code
    headers: list[tuple[bytes, bytes]] = []
    if code in RETRY_AFTER_CODES:
        headers.append((b"retry-after", RETRY_AFTER_SECONDS))
    elif code is ErrorCode.UNAUTHENTICATED:
        headers.append((b"www-authenticate", b"Bearer"))
    elif isinstance(exc, MethodNotAllowedError) and exc.allow:
        headers.append((b"allow", exc.allow.encode("latin-1")))
    return ErrorAnswer(STATUS_BY_CODE[code], headers, exc.message)
