"""OPTIONS / : an OpenAPI 3.0.1 document of every endpoint, valid, generated from the routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from fastserve.app import App
from fastserve.config import ServerConfig
from fastserve.frontends.openapi import openapi_document, operation_id
from fastserve.http.router import Router

Server = Any


@pytest.fixture(scope="module")
def app(ts_repo: Path) -> App:
    """The server's composition built in-process (nothing listens, nothing loads)."""
    return App(ServerConfig(models=ts_repo))


@pytest.mark.parametrize("method,path", [("OPTIONS", "/"), ("GET", "/api-description")])
def test_openapi_document_is_valid_and_lists_every_route(ts_server: Server, app: App,
                                                         method: str, path: str) -> None:
    status, headers, body = ts_server.request(method, path)
    assert status == 200
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["openapi"] == "3.0.1"
    validate(doc)
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routes = {(r.method, r.template) for r in app.router.routes}
    assert routes == listed
    for must in [("OPTIONS", "/"), ("GET", "/ping"), ("POST", "/predictions/{model}"),
                 ("PUT", "/predictions/{model}/{version}"), ("POST", "/explanations/{model}"),
                 ("POST", "/v1/models/{model}:explain"), ("POST", "/v2/models/{model}/infer")]:
        assert must in listed


def test_openapi_error_schemas_follow_the_path_family(ts_server: Server) -> None:
    doc = json.loads(ts_server.request("OPTIONS", "/")[2])

    def error_ref(path: str, method: str) -> str:
        op = doc["paths"][path][method]
        return op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]

    assert error_ref("/predictions/{model}", "post").endswith("/TorchServeError")
    assert error_ref("/ping", "get").endswith("/TorchServeError")
    assert error_ref("/v2/models/{model}/infer", "post").endswith("/Error")
    params = doc["paths"]["/predictions/{model}/{version}"]["post"]["parameters"]
    assert [p["name"] for p in params] == ["model", "version"]
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_openapi_management_port_describes_its_own_routes(ts_server: Server, app: App) -> None:
    status, _, body = ts_server.request("OPTIONS", "/", port=ts_server.management_port)
    assert status == 200
    doc = json.loads(body)
    validate(doc)
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed == {(r.method, r.template) for r in app.management_router.routes}


def test_openapi_document_follows_the_route_table() -> None:
    router = Router()
    router.add("GET", "/a/{x}", lambda r: None, "get a", ("T",))
    before = openapi_document(router, "t", "1")
    router.add("POST", "/a/{x}:verb", lambda r: None)
    after = openapi_document(router, "t", "1")
    validate(after)
    assert list(before["paths"]) == ["/a/{x}"]
    assert after["paths"]["/a/{x}:verb"]["post"]["operationId"] == operation_id("POST",
                                                                                "/a/{x}:verb")
    assert "requestBody" in after["paths"]["/a/{x}:verb"]["post"]
