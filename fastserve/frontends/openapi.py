"""An OpenAPI 3.0.1 description of every endpoint of a port, generated from its route table.

Generated (never written by hand) so that it cannot drift from what the server answers:
each route's method, path template, summary and tags become one operation; its path
parameters, a request body for POST and PUT, and the error body of its path family
(the router's error formatter may carry ``openapi_schema = (name, schema)``; others
answer ``{"error": "<message>"}``) complete it. TorchServe answers ``OPTIONS /`` with
such a document (``docs/inference_api.md``, "API Description").
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..http.messages import Request, Response
from ..http.router import Router

OPENAPI_VERSION = "3.0.1"
_PARAM = re.compile(r"\{(\w+)\}")
_DEFAULT_ERROR = ("Error", {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what went wrong"}},
})
_BINARY = {"type": "string", "format": "binary"}


def operation_id(method: str, template: str) -> str:
    slug = re.sub(r"[^0-9A-Za-z]+", "_", template).strip("_") or "root"
    return f"{method.lower()}_{slug}"


def openapi_document(router: Router, title: str, version: str,
                     description: str = "") -> dict[str, Any]:
    """The document for every route of ``router``, in registration order."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for route in router.routes:
        formatter = router.error_formatter(route.template)
        error_name, error_schema = getattr(formatter, "openapi_schema", _DEFAULT_ERROR)
        schemas[error_name] = error_schema
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _PARAM.findall(route.template)]
        operation: dict[str, Any] = {
            "operationId": operation_id(route.method, route.template),
            "summary": route.summary or f"{route.method} {route.template}",
        }
        if route.tags:
            operation["tags"] = list(route.tags)
        if params:
            operation["parameters"] = params
        if route.method in ("POST", "PUT", "PATCH"):
            operation["requestBody"] = {
                "description": "The request body: JSON, or the binary formats the endpoint "
                               "takes (tensor bytes, images, .npy, multipart/form-data)",
                "required": False,
                "content": {"*/*": {"schema": _BINARY}},
            }
        operation["responses"] = {
            "200": {"description": "OK", "content": {"*/*": {"schema": {}}}},
            "default": {"description": "An error, with the status that says which",
                        "content": {"application/json": {
                            "schema": {"$ref": f"#/components/schemas/{error_name}"}}}},
        }
        paths.setdefault(route.template, {})[route.method.lower()] = operation
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    return {"openapi": OPENAPI_VERSION, "info": info, "paths": paths,
            "components": {"schemas": schemas}}


class ApiDescription:
    """``OPTIONS /`` of one port: the document of its router, regenerated when routes are
    added (front-ends may register after this one)."""

    def __init__(self, router: Router, title: str, version: str, description: str = "") -> None:
        self.router = router
        self.title = title
        self.version = version
        self.description = description
        self._cached: tuple[int, bytes] | None = None

    def register(self, tags: tuple[str, ...] = ()) -> None:
        self.router.add("OPTIONS", "/", self,
                        "OpenAPI 3.0.1 description of every endpoint on this port", tags)

    def document(self) -> dict[str, Any]:
        return openapi_document(self.router, self.title, self.version, self.description)

    def __call__(self, request: Request) -> Response:
        count = len(self.router.routes)
        if self._cached is None or self._cached[0] != count:
            self._cached = (count, orjson.dumps(self.document()))
        return Response(self._cached[1])
