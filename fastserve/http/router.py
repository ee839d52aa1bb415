"""Route table: method + path template -> handler, path parameters, 404/405.

Templates use ``{name}`` for one path segment, optionally followed by a literal
suffix inside the segment (TF Serving's ``/v1/models/{model}:predict``). Static
paths are one dict lookup; templated ones are tried by their first segment.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import MethodNotAllowedError, RouteNotFoundError
from .messages import ErrorFormatter, Response

_PARAM = re.compile(r"\{(\w+)\}")
MATCH_CACHE_SIZE = 4096


@dataclass
class Route:
    method: str
    template: str
    handler: Callable[..., Any]
    summary: str = ""
    tags: tuple[str, ...] = ()
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.handler)


def _compile(template: str) -> re.Pattern[str]:
    pattern = ""
    pos = 0
    for m in _PARAM.finditer(template):
        pattern += re.escape(template[pos : m.start()])
        # A parameter never spans '/', and stops before a ':' suffix in the same segment.
        pattern += f"(?P<{m.group(1)}>[^/]+?)"
        pos = m.end()
    pattern += re.escape(template[pos:])
    return re.compile(pattern + r"\Z")


def default_error_formatter(status: int, message: str, exc: BaseException | None) -> Response:
    return Response(orjson.dumps({"error": message}), status)


class Router:
    """Resolves requests to handlers; knows which error shape each path family uses."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._static: dict[str, dict[str, Route]] = {}
        self._dynamic: dict[str, list[tuple[re.Pattern[str], dict[str, Route]]]] = {}
        self._formatters: list[tuple[str, ErrorFormatter]] = []
        # Answers every request no route matches (the --workers parent forwards them).
        self.fallback: Callable[..., Any] | None = None
        # Templated paths already matched: (method, path) -> route and parameters. Bounded,
        # as paths come from clients; cleared when full or when a route is added.
        self._matched: dict[tuple[str, str], tuple[Route, dict[str, str]]] = {}
        # GET routes whose answer depends on nothing in the request (health): path -> handler.
        self.probes: dict[str, Callable[..., Any]] = {}

    def add(
        self,
        method: str,
        template: str,
        handler: Callable[..., Any],
        summary: str = "",
        tags: tuple[str, ...] = (),
    ) -> None:
        route = Route(method, template, handler, summary, tags)
        self.routes.append(route)
        self._matched.clear()
        if "{" not in template:
            self._static.setdefault(template, {})[method] = route
            return
        head = template.split("/", 2)[1]
        entries = self._dynamic.setdefault(head if "{" not in head else "", [])
        for pattern, methods in entries:
            if pattern.pattern == _compile(template).pattern:
                methods[method] = route
                return
        entries.append((_compile(template), {method: route}))

    def add_probe(self, path: str, handler: Callable[..., Any], summary: str = "",
                  tags: tuple[str, ...] = ()) -> None:
        """A GET route (health, readiness) whose answer depends on the server's state, never
        on the request: the transport may answer a plain GET of it from the answer it
        encoded earlier in the same event-loop iteration (fastserve/http/probes.py)."""
        self.add("GET", path, handler, summary, tags)
        self.probes[path] = handler

    def set_error_formatter(self, prefix: str, formatter: ErrorFormatter) -> None:
        """Errors on paths starting with ``prefix`` use this body shape (longest prefix wins)."""
        self._formatters.append((prefix, formatter))
        self._formatters.sort(key=lambda item: -len(item[0]))

    def error_formatter(self, path: str) -> ErrorFormatter:
        for prefix, formatter in self._formatters:
            # Whole segments only: "/ping" covers "/ping" and "/ping/x", not "/pingx".
            if path.startswith(prefix) and (len(path) == len(prefix) or prefix.endswith("/")
                                            or path[len(prefix)] == "/"):
                return formatter
        return default_error_formatter

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """Return the route and path parameters, or raise RouteNotFound / MethodNotAllowed."""
        methods = self._static.get(path)
        params: dict[str, str] = {}
        if methods is None:
            hit = self._matched.get((method, path))
            if hit is not None:
                return hit[0], hit[1].copy()
            head = path.split("/", 2)[1] if path.count("/") >= 1 else ""
            for key in (head, ""):
                for pattern, candidates in self._dynamic.get(key, ()):
                    m = pattern.match(path)
                    if m is None:
                        continue
                    if methods is None:
                        methods, params = candidates, m.groupdict()
                    # Templates can overlap ("/m/{model}" also matches "/m/x:predict"):
                    # the first one that has this method wins; else the first match's 405.
                    if method in candidates:
                        if len(self._matched) >= MATCH_CACHE_SIZE:
                            self._matched.clear()
                        params = m.groupdict()
                        self._matched[method, path] = candidates[method], params
                        return candidates[method], params.copy()
        if methods is None:
            if self.fallback is not None:
                return Route(method, path, self.fallback), params
            raise RouteNotFoundError(f"no endpoint at {path}")
        route = methods.get(method)
        if route is None:
            if method == "HEAD" and "GET" in methods:
                return methods["GET"], params
            allowed = ", ".join(sorted(methods))
            raise MethodNotAllowedError(f"{method} is not allowed on {path}; allowed: {allowed}",
                                        allow=allowed)
        return route, params
