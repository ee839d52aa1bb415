"""One port for both APIs (fastserve/shared_port.py): the management route wins where
both have one, every other path goes to inference, each API checks its own token."""

from __future__ import annotations

import orjson
import pytest

from fastserve.auth import bearer_guard
from fastserve.errors import RouteNotFoundError, UnauthorizedError
from fastserve.http.messages import Request
from fastserve.http.router import Router
from fastserve.shared_port import SharedPortRouter, shared_guard


def handler(name: str):  # noqa: ANN201
    def handle(request: Request) -> str:
        return name

    return handle


@pytest.fixture()
def routers() -> tuple[Router, Router]:
    management, inference = Router(), Router()
    management.add("GET", "/models", handler("management list"))
    management.add("POST", "/v2/repository/models/{model}/load", handler("load"))
    inference.add("POST", "/v2/repository/models/{model}/load", handler("403 refusal"))
    inference.add("POST", "/predictions/{model}", handler("predict"))
    return management, inference


def request(method: str, path: str, token: bytes | None = None) -> Request:
    headers = {b"authorization": b"Bearer " + token} if token else {}
    return Request(method, path, "", headers, b"")


def test_management_routes_win_and_the_rest_is_inference(routers) -> None:
    shared = SharedPortRouter(*routers)
    assert shared.resolve("GET", "/models")[0].handler(None) == "management list"
    route, params = shared.resolve("POST", "/v2/repository/models/m/load")
    assert route.handler(None) == "load" and params == {"model": "m"}
    assert shared.resolve("POST", "/predictions/m")[0].handler(None) == "predict"
    with pytest.raises(RouteNotFoundError):
        shared.resolve("GET", "/nowhere")


def test_each_api_keeps_its_own_token(routers) -> None:
    shared = SharedPortRouter(*routers)
    guard = shared_guard(shared, bearer_guard(b"admin"), bearer_guard(b"user"))
    assert guard is not None
    guard(request("GET", "/models", b"admin"))
    guard(request("POST", "/predictions/m", b"user"))
    with pytest.raises(UnauthorizedError):
        guard(request("GET", "/models", b"user"))  # the inference token cannot manage
    with pytest.raises(UnauthorizedError):
        guard(request("POST", "/predictions/m", b"admin"))
    assert shared_guard(shared, None, None) is None


def test_options_describes_both_apis_in_one_document(routers) -> None:
    shared = SharedPortRouter(*routers, version="9.9")
    route, _ = shared.resolve("OPTIONS", "/")
    doc = orjson.loads(route.handler(request("OPTIONS", "/")).body)
    assert doc["info"]["version"] == "9.9"
    assert set(doc["paths"]) == {"/", "/models", "/v2/repository/models/{model}/load",
                                 "/predictions/{model}"}
