"""One port for the inference and management APIs, as TorchServe 0.12 serves them when
config.properties gives ``inference_address`` and ``management_address`` the same value
(or ``--management-port`` equals ``--port``): a request goes to the management API's
route when it has one, else to the inference API's. With ``--auth-token-file`` each
API keeps its own token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import MethodNotAllowedError, RouteNotFoundError
from .frontends.openapi import ApiDescription
from .http.messages import ErrorFormatter, Request
from .http.router import Route, Router, default_error_formatter

Guard = Callable[[Request], None]


class SharedPortRouter:
    """The management router, falling back to the inference router; ``OPTIONS /``
    describes both APIs in one document, as TorchServe's does on such a port."""

    def __init__(self, management: Router, inference: Router, version: str = "") -> None:
        self.management, self.inference = management, inference
        self.probes = inference.probes  # /ping, /v2/health/*: the inference port's answers
        description = ApiDescription(self, "fastserve inference and management APIs",  # type: ignore[arg-type]
                                     version)
        self._describe = Route("OPTIONS", "/", description,
                               "OpenAPI 3.0.1 description of every endpoint on this port")

    @property
    def routes(self) -> list[Route]:
        """Every route the port answers: the management API's, then the inference API's
        that it does not shadow."""
        taken = {(r.method, r.template) for r in self.management.routes}
        return [self._describe] + [
            r for r in self.management.routes + [
                r for r in self.inference.routes if (r.method, r.template) not in taken]
            if (r.method, r.template) != ("OPTIONS", "/")]

    def serves_management(self, method: str, path: str) -> bool:
        try:
            self.management.resolve(method, path)
        except (RouteNotFoundError, MethodNotAllowedError):
            return False
        return True

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        if method == "OPTIONS" and path == "/":
            return self._describe, {}
        try:
            return self.management.resolve(method, path)
        except (RouteNotFoundError, MethodNotAllowedError):
            return self.inference.resolve(method, path)

    def error_formatter(self, path: str) -> ErrorFormatter:
        formatter = self.inference.error_formatter(path)
        if formatter is default_error_formatter:
            return self.management.error_formatter(path)
        return formatter


def shared_guard(router: SharedPortRouter, management: Guard | None,
                 inference: Guard | None) -> Guard | None:
    """Each API's own bearer token on the shared port."""
    if management is None and inference is None:
        return None

    def guard(request: Request) -> Any:
        chosen = (management if router.serves_management(request.method, request.path)
                  else inference)
        if chosen is not None:
            chosen(request)

    return guard
