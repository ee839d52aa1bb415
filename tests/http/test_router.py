"""Router: static and templated routes, suffix templates, 404 vs 405, formatter prefixes.

Pure unit tests (tier 1): no loop, no transport.
"""

from __future__ import annotations

import orjson
import pytest

from fastserve.errors import MethodNotAllowedError, RouteNotFoundError
from fastserve.http.messages import Response
from fastserve.http.router import Router, default_error_formatter


def handler(name):
    def answer(request):
        return Response(name.encode())

    answer.__name__ = name
    return answer


async def async_handler(request):
    return Response(b"async")


@pytest.fixture
def router():
    r = Router()
    r.add("GET", "/v2/health/ready", handler("ready"))
    r.add("GET", "/v2/models/{model}", handler("metadata"))
    r.add("GET", "/v2/models/{model}/versions/{version}", handler("version-metadata"))
    r.add("POST", "/v2/models/{model}/infer", handler("infer"))
    r.add("POST", "/v2/models/{model}/versions/{version}/infer", handler("version-infer"))
    r.add("GET", "/v1/models/{model}", handler("tf-status"))
    r.add("POST", "/v1/models/{model}:predict", handler("tf-predict"))
    r.add("POST", "/v1/models/{model}:classify", handler("tf-classify"))
    r.add("POST", "/v1/models/{model}/versions/{version}:predict", handler("tf-version-predict"))
    r.add("GET", "/{anything}/free", handler("head-param"))
    r.add("POST", "/predictions/{model}", async_handler)
    r.add("PUT", "/predictions/{model}", handler("put-prediction"))
    return r


def resolved(router, method, path):
    route, params = router.resolve(method, path)
    return route.handler.__name__, params


@pytest.mark.parametrize("method, path, name, params", [
    ("GET", "/v2/health/ready", "ready", {}),
    ("GET", "/v2/models/resnet", "metadata", {"model": "resnet"}),
    ("GET", "/v2/models/resnet/versions/3", "version-metadata",
     {"model": "resnet", "version": "3"}),
    ("POST", "/v2/models/resnet/infer", "infer", {"model": "resnet"}),
    ("POST", "/v2/models/a.b-c_d/versions/12/infer", "version-infer",
     {"model": "a.b-c_d", "version": "12"}),
    ("GET", "/v1/models/half_plus_two", "tf-status", {"model": "half_plus_two"}),
    ("POST", "/v1/models/half_plus_two:predict", "tf-predict", {"model": "half_plus_two"}),
    ("POST", "/v1/models/m:classify", "tf-classify", {"model": "m"}),
    ("POST", "/v1/models/m/versions/2:predict", "tf-version-predict",
     {"model": "m", "version": "2"}),
    ("GET", "/x/free", "head-param", {"anything": "x"}),
    ("PUT", "/predictions/m", "put-prediction", {"model": "m"}),
])
def test_resolves(router, method, path, name, params):
    assert resolved(router, method, path) == (name, params)


def test_repeated_templated_path_gives_the_same_answer(router):
    first = resolved(router, "POST", "/v2/models/resnet/infer")
    first[1]["model"] = "changed by a handler"  # each caller gets its own parameters
    assert resolved(router, "POST", "/v2/models/resnet/infer") == ("infer", {"model": "resnet"})
    # Same path, other method: not confused with the remembered one.
    with pytest.raises(MethodNotAllowedError):
        router.resolve("DELETE", "/v2/models/resnet/infer")


def test_route_added_later_is_found_for_a_path_matched_before():
    r = Router()
    r.add("GET", "/{anything}/x", handler("generic"))
    assert resolved(r, "GET", "/m/x") == ("generic", {"anything": "m"})
    r.add("GET", "/m/x", handler("specific"))
    assert resolved(r, "GET", "/m/x") == ("specific", {})


def test_remembered_matches_are_bounded(router, monkeypatch):
    import fastserve.http.router as router_module

    monkeypatch.setattr(router_module, "MATCH_CACHE_SIZE", 8)
    for i in range(50):
        assert resolved(router, "GET", f"/v2/models/m{i}") == ("metadata", {"model": f"m{i}"})
    assert len(router._matched) <= 8


def test_suffix_template_does_not_swallow_the_suffix(router):
    # GET /v1/models/{model} is registered first and also matches "m:predict".
    assert resolved(router, "POST", "/v1/models/m:predict") == ("tf-predict", {"model": "m"})


def test_overlap_is_independent_of_registration_order():
    for order in ([0, 1], [1, 0]):
        r = Router()
        routes = [("GET", "/v1/models/{model}", handler("status")),
                  ("POST", "/v1/models/{model}:predict", handler("predict"))]
        for i in order:
            r.add(*routes[i])
        assert resolved(r, "POST", "/v1/models/m:predict") == ("predict", {"model": "m"})
        assert resolved(r, "GET", "/v1/models/m") == ("status", {"model": "m"})


def test_parameters_never_span_a_slash(router):
    with pytest.raises(RouteNotFoundError):
        router.resolve("GET", "/v2/models/a/b")
    with pytest.raises(RouteNotFoundError):
        router.resolve("POST", "/v2/models//infer")


def test_static_route_wins_over_a_template():
    r = Router()
    r.add("GET", "/v2/models/{model}", handler("model"))
    r.add("GET", "/v2/models/stats", handler("stats"))
    assert resolved(r, "GET", "/v2/models/stats") == ("stats", {})
    assert resolved(r, "GET", "/v2/models/other") == ("model", {"model": "other"})


@pytest.mark.parametrize("path", ["/", "/nope", "/v2", "/v2/models", "/v2/models/m/infer/x",
                                  "/v1/models/m:explain/x", "", "*", "/predictions"])
def test_unknown_path_is_404(router, path):
    with pytest.raises(RouteNotFoundError, match="no endpoint at"):
        router.resolve("GET", path)


@pytest.mark.parametrize("method, path, allow", [
    ("POST", "/v2/health/ready", "GET"),
    ("GET", "/v2/models/m/infer", "POST"),
    ("DELETE", "/v2/models/m", "GET"),
    ("GET", "/v1/models/m:predict", None),  # GET /v1/models/{model} takes it: model "m:predict"
    ("DELETE", "/v1/models/m:predict", "GET"),
    ("GET", "/predictions/m", "POST, PUT"),
])
def test_wrong_method_is_405_with_allow(router, method, path, allow):
    if allow is None:
        assert resolved(router, method, path) == ("tf-status", {"model": "m:predict"})
        return
    with pytest.raises(MethodNotAllowedError) as info:
        router.resolve(method, path)
    assert info.value.allow == allow
    assert f"{method} is not allowed on {path}; allowed: {allow}" == info.value.message


def test_head_falls_back_to_get(router):
    assert resolved(router, "HEAD", "/v2/health/ready") == ("ready", {})
    assert resolved(router, "HEAD", "/v2/models/m") == ("metadata", {"model": "m"})
    with pytest.raises(MethodNotAllowedError):
        router.resolve("HEAD", "/v2/models/m/infer")


def test_explicit_head_route_wins():
    r = Router()
    r.add("GET", "/x", handler("get"))
    r.add("HEAD", "/x", handler("head"))
    assert resolved(r, "HEAD", "/x") == ("head", {})


def test_same_template_several_methods_share_one_pattern():
    r = Router()
    r.add("GET", "/m/{model}", handler("get"))
    r.add("DELETE", "/m/{model}", handler("delete"))
    assert resolved(r, "DELETE", "/m/x") == ("delete", {"model": "x"})
    assert sum(len(entries) for entries in r._dynamic.values()) == 1
    assert [route.method for route in r.routes] == ["GET", "DELETE"]


def test_routes_know_whether_they_are_async(router):
    assert router.resolve("POST", "/predictions/m")[0].is_async
    assert not router.resolve("PUT", "/predictions/m")[0].is_async


def test_regex_characters_in_templates_are_literal():
    r = Router()
    r.add("GET", "/a.b/{x}+", handler("dot"))
    assert resolved(r, "GET", "/a.b/1+") == ("dot", {"x": "1"})
    with pytest.raises(RouteNotFoundError):
        r.resolve("GET", "/aXb/1+")


def test_summary_and_tags_are_kept():
    r = Router()
    r.add("GET", "/x", handler("x"), "Say x", ("misc",))
    assert (r.routes[0].summary, r.routes[0].tags) == ("Say x", ("misc",))


# Error formatters


def shape(name):
    def formatter(status, message, exc):
        return Response(orjson.dumps({"shape": name, "status": status, "message": message}),
                        status)

    return formatter


@pytest.fixture
def formatted():
    r = Router()
    r.set_error_formatter("/v2", shape("v2"))
    r.set_error_formatter("/predictions", shape("torchserve"))
    r.set_error_formatter("/v2/repository", shape("repository"))
    r.set_error_formatter("/ping", shape("torchserve"))

    def which(path):
        response = r.error_formatter(path)(404, "nope", None)
        if r.error_formatter(path) is default_error_formatter:
            return "default"
        return orjson.loads(response.body)["shape"]

    return which


@pytest.mark.parametrize("path, expected", [
    ("/v2", "v2"),
    ("/v2/models/m/infer", "v2"),
    ("/v2/repository/index", "repository"),
    ("/v2/repository", "repository"),
    ("/v2/repositoryx", "v2"),
    ("/predictions/m", "torchserve"),
    ("/ping", "torchserve"),
    ("/pingx", "default"),
    ("/v20/x", "default"),
    ("/v1/models/m:predict", "default"),
    ("/", "default"),
    ("", "default"),
])
def test_formatter_longest_whole_segment_prefix(formatted, path, expected):
    assert formatted(path) == expected


def test_formatter_registration_order_does_not_matter():
    r = Router()
    r.set_error_formatter("/a/b", shape("long"))
    r.set_error_formatter("/a", shape("short"))
    assert orjson.loads(r.error_formatter("/a/b/c")(400, "m", None).body)["shape"] == "long"
    assert orjson.loads(r.error_formatter("/a/c")(400, "m", None).body)["shape"] == "short"


def test_default_formatter_shape():
    response = default_error_formatter(404, 'no "model" here', None)
    assert response.status == 404
    assert response.content_type == b"application/json"
    assert orjson.loads(response.body) == {"error": 'no "model" here'}
