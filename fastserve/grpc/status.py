"""gRPC status codes for fastserve's errors, auth from metadata, and per-call metrics.

The one mapping (CONTRACT §8): an error's ``ErrorCode`` names its gRPC code; an HTTP
status (answers replayed through the management API) maps through the same table.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

import grpc

from ..errors import ErrorCode, FastServeError
from ..http.messages import STATUS_BY_CODE
from .services import check

CODE_BY_ERROR = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Answers replayed through the management API come back as HTTP statuses.
CODE_BY_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED, 409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED, 500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def code_of(exc: BaseException) -> tuple[grpc.StatusCode, str, int]:
    """(gRPC code, message, HTTP-equivalent status for metrics) of any exception."""
    if isinstance(exc, FastServeError):
        return CODE_BY_ERROR[exc.code], exc.message, STATUS_BY_CODE[exc.code]
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}", 500


def code_of_status(status: int) -> grpc.StatusCode:
    if status < 400:
        return grpc.StatusCode.OK
    return CODE_BY_STATUS.get(status, grpc.StatusCode.INTERNAL if status >= 500
                              else grpc.StatusCode.INVALID_ARGUMENT)


class CallPolicy:
    """What every RPC of one port checks and reports: the bearer token (``authorization``
    metadata, as the HTTP header) and the answer's status for ``/metrics`` (api="grpc")."""

    def __init__(self, token: bytes | None = None,
                 count: Callable[[str, str | None, int], None] | None = None) -> None:
        self.expected = None if token is None else b"Bearer " + token
        self.count = count

    def authorized(self, context: grpc.aio.ServicerContext) -> str | None:
        """None when the call may go on, else why not."""
        if self.expected is None:
            return None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                given = value.encode("latin-1") if isinstance(value, str) else value
                # NOTE: compare_digest keeps the comparison time independent of the token.
                if hmac.compare_digest(given.strip(), self.expected):
                    return None
                return "the bearer token is not valid for this port"
        return ("missing or wrong token: send metadata 'authorization: Bearer <token>' "
                "(see --auth-token-file)")


def unary(counted: bool = True, public: bool = False) -> Callable[[Any], Any]:
    """Wrap a unary servicer method: auth, FastServeError -> status, metrics.

    ``public`` calls (liveness, readiness) need no token, as /v2/health/* over HTTP;
    ``counted`` ones appear in fastserve_requests_total with the request's model.
    """

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            policy: CallPolicy = self.policy
            if not public:
                refused = policy.authorized(context)
                if refused is not None:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
            try:
                check(request)
                result = await method(self, request, context)
            except FastServeError as exc:
                code, message, status = code_of(exc)
            except Exception as exc:  # the model or our code raised: INTERNAL, server lives on
                code, message, status = code_of(exc)
            else:
                if counted and policy.count is not None:
                    policy.count(*model_of(request), 200)
                return result
            if counted and policy.count is not None:
                policy.count(*model_of(request), status)
            await context.abort(code, message)

        return call

    return wrap


def model_of(request: Any) -> tuple[str, str | None]:
    """The (model, version) a request message names, for the metrics labels."""
    name = getattr(request, "model_name", None) or getattr(request, "name", "") or ""
    version = getattr(request, "model_version", None) or getattr(request, "version", None)
    return name, version or None
