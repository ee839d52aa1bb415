"""TF Serving REST API (and KServe v1) against one real server; models in conftest.py.

Request bodies marked "doc" are TF Serving's api_rest.md examples as printed (its
``// comment`` lines left out: they are not JSON, and TF Serving refuses them too).
Expected values come from the same model files run locally with torch.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

Local = Callable[..., Any]

# --- api_rest.md request bodies -------------------------------------------------------

DOC_PREDICT = '{"instances": [1.0,2.0,5.0]}'
DOC_REGRESS = ('{"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, '
               '{"x": 2.0}]}')
DOC_NOT_FOUND = '{"instances": [1.0,5.0]}'
DOC_ROW_SCALARS = """{
  "instances": [ "foo", "bar", "baz" ]
}"""
DOC_ROW_TENSORS = """{
  "instances": [ [[1, 2]], [[3, 4]] ]
}"""
# NOTE: as printed, with the doc's stray ']' after the second "signal": not valid JSON.
DOC_ROW_NAMED = """{
 "instances": [
   {
     "tag": "foo",
     "signal": [1, 2, 3, 4, 5],
     "sensor": [[1, 2], [3, 4]]
   },
   {
     "tag": "bar",
     "signal": [3, 4, 1, 2, 5]],
     "sensor": [[4, 5], [6, 8]]
   }
 ]
}"""
DOC_ROW_NAMED_FIXED = DOC_ROW_NAMED.replace("[3, 4, 1, 2, 5]],", "[3, 4, 1, 2, 5],")
DOC_COLUMNAR = """{
 "inputs": {
   "tag": ["foo", "bar"],
   "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
   "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]
 }
}"""
DOC_CLASSIFY_B64 = """{
  "signature_name": "classify_objects",
  "examples": [
    {
      "image": { "b64": "aW1hZ2UgYnl0ZXM=" },
      "caption": "seaside"
    },
    {
      "image": { "b64": "YXdlc29tZSBpbWFnZSBieXRlcw==" },
      "caption": "mountains"
    }
  ]
}"""
DOC_STATUS = {"model_version_status": [
    {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
]}


# --- helpers ---------------------------------------------------------------------------


def call(server: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON); the stdlib parser reads NaN/Infinity tokens as TF writes them."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    status, _, data = server.request(method, path, body, {"Content-Type": "application/json"})
    return status, json.loads(data)


def post(server: Any, path: str, body: Any) -> tuple[int, Any]:
    return call(server, "POST", path, body)


def run(local: Local, name: str, *args: Any, version: str = "1") -> Any:
    with torch.inference_mode():
        return local(name, version)(*args)


def close(got: Any, want: Any) -> bool:
    want = np.asarray(want.numpy() if isinstance(want, torch.Tensor) else want)
    got = np.asarray(got, dtype=want.dtype)
    return got.shape == want.shape and np.allclose(got, want, equal_nan=True)


def error_of(status_body: tuple[int, Any], status: int) -> str:
    got_status, body = status_body
    assert got_status == status, body
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


# --- status (TF Serving GetModelStatus + KServe v1 name/ready) ----------------------------


def test_status_doc_example(tf_server: Any) -> None:
    status, body = call(tf_server, "GET", "/v1/models/half_plus_three")
    assert status == 200
    assert body == {"name": "half_plus_three", "ready": True, **DOC_STATUS}


def test_kserve_v1_server_live_and_model_list(tf_server: Any, tf_models: Any) -> None:
    """The kserve SDK's v1 is_server_live (GET /) and list_models (GET /v1/models)."""
    assert call(tf_server, "GET", "/") == (200, {"status": "alive"})
    status, body = call(tf_server, "GET", "/v1/models")
    folders = sorted(p.name for p in tf_models.iterdir() if p.is_dir())
    assert status == 200 and body == {"models": folders}
    assert call(tf_server, "POST", "/")[0] == 405


def test_status_every_version_and_one(tf_server: Any) -> None:
    ok = {"error_code": "OK", "error_message": ""}
    status, body = call(tf_server, "GET", "/v1/models/half_plus_two")
    assert status == 200
    assert body == {"name": "half_plus_two", "ready": True, "model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": ok},
        {"version": "2", "state": "AVAILABLE", "status": ok}]}
    for path, version in (("/versions/1", "1"), ("/labels/latest", "2"),
                          ("/labels/default", "2")):
        status, body = call(tf_server, "GET", "/v1/models/half_plus_two" + path)
        assert status == 200
        assert body == {"name": "half_plus_two", "ready": True, "model_version_status": [
            {"version": version, "state": "AVAILABLE", "status": ok}]}


def test_status_broken_model_shows_its_load_error(tf_server: Any) -> None:
    status, body = call(tf_server, "GET", "/v1/models/broken")
    assert status == 200
    assert body["name"] == "broken" and body["ready"] is False
    [version] = body["model_version_status"]
    assert version["version"] == "1" and version["state"] == "END"
    assert version["status"]["error_code"] == "UNKNOWN"
    assert "model.pt" in version["status"]["error_message"]
    error = error_of(post(tf_server, "/v1/models/broken:predict", DOC_PREDICT), 503)
    assert "failed to load" in error and "model.pt" in error


def test_status_model_without_versions(tf_server: Any) -> None:
    assert "no version folders" in error_of(call(tf_server, "GET", "/v1/models/no_version"),
                                            503)


@pytest.mark.parametrize("path", [
    "/v1/models/nope", "/v1/models/half_plus_two/versions/3",
    "/v1/models/half_plus_two/versions/HELLO", "/v1/models/half_plus_two/labels/canary",
    "/v1/models/nope/metadata", "/v1/models/half_plus_two/versions/9/metadata",
    "/v1/models/half_plus_two/labels/stable/metadata",
])
def test_status_unknown_model_version_or_label_404(tf_server: Any, path: str) -> None:
    error_of(call(tf_server, "GET", path), 404)


def test_status_wrong_methods_405(tf_server: Any) -> None:
    for path in ("/v1/models/iris:predict", "/v1/models/iris/versions/1:classify",
                 "/v1/models/iris/labels/latest:regress"):
        status, headers, data = tf_server.request("GET", path)
        assert status == 405 and headers["allow"] == "POST", data
        assert set(json.loads(data)) == {"error"}
    status, headers, data = tf_server.request("POST", "/v1/models/iris", b"{}")
    assert status == 405 and headers["allow"] == "GET"
    status, _, data = tf_server.request("POST", "/v1/models/iris/metadata", b"{}")
    assert status == 405 and set(json.loads(data)) == {"error"}


# --- metadata -------------------------------------------------------------------------


def _info(dtype: str, dims: list[int], name: str) -> dict[str, Any]:
    return {"dtype": dtype, "name": name, "tensor_shape": {
        "dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}}


def test_metadata_signature_def(tf_server: Any) -> None:
    status, body = call(tf_server, "GET", "/v1/models/multi/metadata")
    assert status == 200
    assert body == {
        "model_spec": {"name": "multi", "signature_name": "", "version": "1"},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": {"tag": _info("DT_STRING", [-1], "tag"),
                       "signal": _info("DT_INT64", [-1, 5], "signal"),
                       "sensor": _info("DT_INT64", [-1, 2, 2], "sensor")},
            "outputs": {"tag_bytes": _info("DT_STRING", [-1], "tag_bytes"),
                        "tag_upper": _info("DT_STRING", [-1], "tag_upper"),
                        "signal_sum": _info("DT_INT64", [-1], "signal_sum"),
                        "sensor_mean": _info("DT_FLOAT", [-1], "sensor_mean")},
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }}}},
    }


def test_metadata_versions_and_labels(tf_server: Any) -> None:
    for path, version in (("", "2"), ("/versions/1", "1"), ("/labels/latest", "2"),
                          ("/labels/default", "2")):
        status, body = call(tf_server, "GET", f"/v1/models/half_plus_two{path}/metadata")
        assert status == 200
        assert body["model_spec"] == {"name": "half_plus_two", "signature_name": "",
                                      "version": version}
        signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["inputs"] == {"x": _info("DT_FLOAT", [-1, 1, 2], "x")}
        assert signature["outputs"] == {"y": _info("DT_FLOAT", [-1, 1, 2], "y")}


# --- predict: TF Serving's documented requests ------------------------------------------


def test_predict_doc_row(tf_server: Any, local: Local) -> None:
    status, body = post(tf_server, "/v1/models/half_plus_three:predict", DOC_PREDICT)
    assert status == 200 and set(body) == {"predictions"}
    assert close(body["predictions"], run(local, "half_plus_three", torch.tensor(
        [1.0, 2.0, 5.0]), version="123"))


def test_predict_doc_not_found(tf_server: Any) -> None:
    assert "half" in error_of(post(tf_server, "/v1/models/half:predict", DOC_NOT_FOUND), 404)


def test_predict_doc_row_scalars(tf_server: Any, local: Local) -> None:
    status, body = post(tf_server, "/v1/models/words:predict", DOC_ROW_SCALARS)
    assert status == 200
    assert body == {"predictions": run(local, "words", ["foo", "bar", "baz"]).tolist()}


def test_predict_doc_row_tensors(tf_server: Any, local: Local) -> None:
    status, body = post(tf_server, "/v1/models/half_plus_two:predict", DOC_ROW_TENSORS)
    assert status == 200
    x = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])
    assert close(body["predictions"], run(local, "half_plus_two", x, version="2"))


def _multi_expected(local: Local, tags: list[str], signal: list[Any], sensor: list[Any]
                    ) -> dict[str, list[Any]]:
    tag_bytes, tag_upper, signal_sum, sensor_mean = run(
        local, "multi", tags, torch.tensor(signal), torch.tensor(sensor))
    return {
        "tag_bytes": [{"b64": base64.b64encode(t.encode()).decode()} for t in tag_bytes],
        "tag_upper": list(tag_upper),
        "signal_sum": signal_sum.tolist(),
        "sensor_mean": sensor_mean.tolist(),
    }


DOC_TAGS = ["foo", "bar"]
DOC_SIGNAL = [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]]
DOC_SENSOR = [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]


def test_predict_doc_row_named_inputs(tf_server: Any, local: Local) -> None:
    # As printed, the doc's body is not JSON; TF Serving answers 400 to it as well.
    assert "JSON" in error_of(post(tf_server, "/v1/models/multi:predict", DOC_ROW_NAMED), 400)
    status, body = post(tf_server, "/v1/models/multi:predict", DOC_ROW_NAMED_FIXED)
    assert status == 200 and set(body) == {"predictions"}
    want = _multi_expected(local, DOC_TAGS, DOC_SIGNAL, DOC_SENSOR)
    assert len(body["predictions"]) == 2
    for i, row in enumerate(body["predictions"]):
        assert list(row) == list(want)  # the model's output order
        assert row["tag_bytes"] == want["tag_bytes"][i]  # "_bytes" outputs as {"b64": ...}
        assert row["tag_upper"] == want["tag_upper"][i]  # other strings as text
        assert row["signal_sum"] == want["signal_sum"][i]
        assert math.isclose(row["sensor_mean"], want["sensor_mean"][i], rel_tol=1e-6)


def test_predict_doc_columnar(tf_server: Any, local: Local) -> None:
    status, body = post(tf_server, "/v1/models/multi:predict", DOC_COLUMNAR)
    assert status == 200 and set(body) == {"outputs"}
    want = _multi_expected(local, DOC_TAGS, DOC_SIGNAL, DOC_SENSOR)
    outputs = body["outputs"]
    assert list(outputs) == list(want)
    assert {k: outputs[k] for k in ("tag_bytes", "tag_upper", "signal_sum")} == {
        k: want[k] for k in ("tag_bytes", "tag_upper", "signal_sum")}
    assert close(outputs["sensor_mean"], want["sensor_mean"])


def test_predict_columnar_different_first_dimensions(tf_server: Any, local: Local) -> None:
    tags, signal = ["only one"], [[1, 1, 1, 1, 1], [2, 2, 2, 2, 2], [0, 0, 0, 0, 9]]
    sensor = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    status, body = post(tf_server, "/v1/models/multi:predict",
                        {"inputs": {"tag": tags, "signal": signal, "sensor": sensor}})
    assert status == 200
    want = _multi_expected(local, tags, signal, sensor)
    assert [len(v) for v in body["outputs"].values()] == [1, 1, 3, 2]
    assert body["outputs"]["signal_sum"] == want["signal_sum"]
    assert close(body["outputs"]["sensor_mean"], want["sensor_mean"])


def test_predict_columnar_single_input_unnamed(tf_server: Any, local: Local) -> None:
    x = [0.0, -4.0, 1e6, 2.5]
    for inputs in (x, {"x": x}):
        status, body = post(tf_server, "/v1/models/half_plus_three:predict", {"inputs": inputs})
        assert status == 200 and set(body) == {"outputs"}
        assert close(body["outputs"], run(local, "half_plus_three", torch.tensor(x),
                                          version="123"))


def test_predict_row_objects_for_a_single_input(tf_server: Any, local: Local) -> None:
    status, body = post(tf_server, "/v1/models/half_plus_three:predict",
                        {"signature_name": "serving_default",
                         "instances": [{"x": 1.0}, {"x": -3.0}]})
    assert status == 200
    assert close(body["predictions"], run(local, "half_plus_three", torch.tensor([1.0, -3.0]),
                                          version="123"))


def test_predict_multi_output_batched_and_split(tf_server: Any, local: Local) -> None:
    # 10 rows on a model with max_batch_size 4: split into 3 batches, joined again.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=(10, 3)).astype(
        np.float32)
    instances = [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(10)]
    status, body = post(tf_server, "/v1/models/two_io:predict", {"instances": instances})
    assert status == 200
    want_sum, want_prod = run(local, "two_io", torch.from_numpy(a), torch.from_numpy(b))
    rows = body["predictions"]
    assert [list(r) for r in rows] == [["sum", "prod"]] * 10
    assert close([r["sum"] for r in rows], want_sum)
    assert close([r["prod"] for r in rows], want_prod)
    status, body = post(tf_server, "/v1/models/two_io:predict",
                        {"inputs": {"a": a.tolist(), "b": b.tolist()}})
    assert status == 200 and list(body["outputs"]) == ["sum", "prod"]
    assert close(body["outputs"]["sum"], want_sum) and close(body["outputs"]["prod"], want_prod)


def test_predict_split_larger_than_max_batch(tf_server: Any, local: Local) -> None:
    x = [float(i) for i in range(20)]  # max_batch_size = 8
    status, body = post(tf_server, "/v1/models/half_plus_three:predict", {"instances": x})
    assert status == 200
    assert close(body["predictions"], run(local, "half_plus_three", torch.tensor(x),
                                          version="123"))


def test_predict_b64_and_torchserve_data(tf_server: Any, local: Local) -> None:
    texts = ["hello", "wörld", ""]
    instances = [{"b64": base64.b64encode(texts[0].encode()).decode()},
                 {"data": base64.b64encode(texts[1].encode()).decode()},
                 texts[2]]
    status, body = post(tf_server, "/v1/models/words:predict", {"instances": instances})
    assert status == 200
    assert body == {"predictions": run(local, "words", texts).tolist()}
    # Unpadded base64 is accepted, as absl::Base64Unescape does.
    status, body = post(tf_server, "/v1/models/words:predict",
                        {"inputs": [{"b64": "aGk"}]})
    assert status == 200 and body == {"outputs": [2]}


@pytest.mark.parametrize("version,path", [
    ("1", "/versions/1"), ("2", "/versions/2"), ("2", ""), ("2", "/labels/latest"),
    ("2", "/labels/default"),
])
def test_predict_versions_and_labels(tf_server: Any, local: Local, version: str,
                                     path: str) -> None:
    x = [[[1.0, -2.0]], [[0.5, 8.0]]]
    status, body = post(tf_server, f"/v1/models/half_plus_two{path}:predict", {"instances": x})
    assert status == 200
    assert close(body["predictions"], run(local, "half_plus_two", torch.tensor(x),
                                          version=version))


# --- non-finite floats -----------------------------------------------------------------


def test_nonfinite_tokens_read_and_written(tf_server: Any, local: Local) -> None:
    status, headers, data = tf_server.request(
        "POST", "/v1/models/half_plus_three:predict",
        b'{"instances": [NaN, Infinity, -Infinity, 1.5]}')
    assert status == 200, data
    assert data.replace(b" ", b"") == b'{"predictions":[NaN,Infinity,-Infinity,3.75]}'
    want = run(local, "half_plus_three", torch.tensor([math.nan, math.inf, -math.inf, 1.5]),
               version="123")
    assert close(json.loads(data)["predictions"], want)


def test_nonfinite_in_multi_output_rows_and_classify(tf_server: Any, local: Local) -> None:
    a = [[math.nan, 1.0, 2.0], [math.inf, -1.0, 0.0]]
    b = [[1.0, 1.0, 1.0], [2.0, 0.0, 3.0]]
    status, body = post(tf_server, "/v1/models/two_io:predict",
                        {"instances": [{"a": a[i], "b": b[i]} for i in range(2)]})
    assert status == 200
    want_sum, want_prod = run(local, "two_io", torch.tensor(a), torch.tensor(b))
    assert close([r["sum"] for r in body["predictions"]], want_sum)
    assert close([r["prod"] for r in body["predictions"]], want_prod)
    status, body = post(tf_server, "/v1/models/iris:classify",
                        {"examples": [{"x": [math.nan, 1, 2, 3]}, {"x": [1, 2, 3, 4]}]})
    assert status == 200
    scores = [[s for _, s in row] for row in body["results"]]
    assert close(scores, run(local, "iris", torch.tensor([[math.nan, 1, 2, 3],
                                                          [1.0, 2, 3, 4]])))
    assert math.isnan(scores[0][0])


def test_finite_answers_stay_strict_json(tf_server: Any) -> None:
    status, _, data = tf_server.request("POST", "/v1/models/half_plus_three:predict",
                                        DOC_PREDICT.encode())
    assert status == 200
    json.loads(data, parse_constant=lambda token: pytest.fail(f"unexpected {token}"))


# --- classify and regress ---------------------------------------------------------------


def test_regress_doc_example(tf_server: Any, local: Local) -> None:
    status, body = post(tf_server, "/v1/models/half_plus_three:regress", DOC_REGRESS)
    assert status == 200 and set(body) == {"results", "result"}
    assert body["results"] == body["result"]
    assert close(body["results"], run(local, "half_plus_three", torch.tensor([1.0, 2.0]),
                                      version="123"))


def test_regress_context_merged_into_examples(tf_server: Any, local: Local) -> None:
    status, body = post(tf_server, "/model-serving/house:regress",
                        {"context": {"rooms": 3}, "examples": [{"size": 1.0}, {"size": [2.5]}]})
    assert status == 200
    want = run(local, "house", torch.tensor([[1.0], [2.5]]), torch.tensor([[3.0], [3.0]]))
    assert close(body["results"], want.reshape(-1)) and body["result"] == body["results"]


def test_classify_with_labels(tf_server: Any, local: Local) -> None:
    x = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    status, body = post(tf_server, "/v1/models/iris:classify",
                        {"examples": [{"x": row} for row in x]})
    assert status == 200 and body["results"] == body["result"]
    want = run(local, "iris", torch.tensor(x))
    assert len(body["results"]) == 2
    for row, scores in zip(body["results"], want, strict=True):
        assert [label for label, _ in row] == ["setosa", "versicolor", "virginica"]
        assert close([score for _, score in row], scores)


def test_classify_doc_b64_example_without_labels(tf_server: Any, local: Local) -> None:
    status, body = post(tf_server, "/v1/models/objects:classify", DOC_CLASSIFY_B64)
    assert status == 200 and body["results"] == body["result"]
    want = run(local, "objects", ["image bytes", "awesome image bytes"],
               ["seaside", "mountains"])
    assert [[label for label, _ in row] for row in body["results"]] == [["", ""], ["", ""]]
    assert close([[score for _, score in row] for row in body["results"]], want)


@pytest.mark.parametrize("path,body,status,match", [
    ("iris:classify", {}, 400, "'examples' is expected"),
    ("iris:classify", {"examples": []}, 400, "empty"),
    ("iris:classify", {"examples": {"x": 1}}, 400, "list"),
    ("iris:classify", {"examples": [1.0]}, 400, "object"),
    ("iris:classify", {"examples": [{"y": [1, 2, 3, 4]}]}, 400, "no feature 'x'"),
    ("iris:classify", {"examples": [{"x": [1, 2, 3]}]}, 400, "3 values"),
    ("iris:classify", {"examples": [{"x": [[1, 2], [3, 4]]}]}, 400, "flat list"),
    ("iris:classify", {"examples": [{"x": ["a", "b", "c", "d"]}]}, 400, "numbers"),
    ("iris:classify", {"examples": [{"x": [1, 2, 3, 4]}, {"x": [1, 2, 3, 4, 5]}]}, 400,
     "in example 1"),
    ("iris:classify", {"context": {"x": [1, 2, 3, 4]}, "examples": [{"x": [1, 2, 3, 4]}]},
     400, "both 'context'"),
    ("iris:classify", {"context": [1], "examples": [{"x": [1, 2, 3, 4]}]}, 400, "context"),
    ("iris:classify", {"signature_name": 7, "examples": [{"x": [1, 2, 3, 4]}]}, 400,
     "signature_name"),
    ("iris:regress", {"examples": [{"x": [1, 2, 3, 4]}]}, 400, "one value per example"),
    ("two_io:classify", {"examples": [{"a": [1, 2, 3], "b": [1, 2, 3]}]}, 400, "2 outputs"),
    ("multi:regress", {"examples": [{"tag": "a", "signal": [1, 2, 3, 4, 5],
                                     "sensor": [1, 2, 3, 4]}]}, 400, "4 outputs"),
    ("objects:classify", {"examples": [{"image": {"b64": "%%%"}, "caption": "x"}]}, 400,
     "base64"),
    ("picture:classify", {"examples": [{"input__0": [0.0] * 48}]}, 501, "image_classifier"),
    ("nope:regress", {"examples": [{"x": 1.0}]}, 404, "nope"),
    ("broken:regress", {"examples": [{"x": 1.0}]}, 503, "failed to load"),
])
def test_classify_regress_errors(tf_server: Any, path: str, body: Any, status: int,
                                 match: str) -> None:
    assert match in error_of(post(tf_server, f"/v1/models/{path}", body), status)


# --- predict errors ---------------------------------------------------------------------


@pytest.mark.parametrize("model,body,match", [
    ("half_plus_three", '{"instances": [1.0', "JSON Parse error"),
    ("half_plus_three", "", "JSON Parse error"),
    ("half_plus_three", "[1.0, 2.0]", "JSON object"),
    ("half_plus_three", {"instances": [1.0], "inputs": [1.0]}, "both 'instances' and 'inputs'"),
    ("half_plus_three", {"signature_name": "serving_default"}, "Missing 'inputs' or 'instances'"),
    ("half_plus_three", {"signature_name": "predict_images", "instances": [1.0]},
     "predict_images"),
    ("half_plus_three", {"signature_name": ["x"], "instances": [1.0]}, "signature_name"),
    ("half_plus_three", {"instances": []}, "No values"),
    ("half_plus_three", {"instances": 1.0}, "list"),
    ("half_plus_three", {"instances": [[1.0, 2.0], [3.0]]}, "'x'"),
    ("half_plus_three", {"instances": [1.0, [2.0]]}, "'x'"),
    ("half_plus_three", {"instances": [{"x": 1.0}, 2.0]}, "item 1"),
    ("half_plus_three", {"instances": [1.0, {"x": 2.0}]}, "item 1"),
    ("half_plus_three", {"instances": [{"x": 1.0}, {"y": 2.0}]}, "keys"),
    ("half_plus_three", {"instances": [{"b64": "aGk="}]}, "'x'"),
    ("half_plus_three", {"instances": [[1.0, 2.0]]}, "shape"),
    ("half_plus_three", {"inputs": {"x": [1.0], "z": [2.0]}}, "named input: z"),
    ("half_plus_two", {"instances": [[[1.0, 2.0, 3.0]]]}, "shape"),
    ("two_io", {"instances": [[1, 2, 3]]}, "list of objects"),
    ("two_io", {"inputs": [[1, 2, 3]]}, "expecting an object"),
    ("two_io", {"inputs": {"a": [[1, 2, 3]]}}, "Missing named input: b"),
    ("two_io", {"inputs": {"a": [[1, 2, 3]], "b": [[1, 2, 3], [4, 5, 6]]}}, "rows"),
    ("multi", {"instances": [{"tag": "a", "signal": [1.5, 2, 3, 4, 5],
                              "sensor": [[1, 2], [3, 4]]}]}, "signal"),
    ("words", {"instances": [{"b64": "!!notbase64!!"}]}, "base64"),
    ("words", {"instances": [{"b64": base64.b64encode(b"\xff\xfe").decode()}]}, "UTF-8"),
    ("words", {"instances": [1, 2]}, "BYTES"),
    ("words", {"instances": [["a", "b"], ["c"]]}, "ragged"),
])
def test_predict_bad_requests_400(tf_server: Any, model: str, body: Any, match: str) -> None:
    assert match in error_of(post(tf_server, f"/v1/models/{model}:predict", body), 400)


def test_predict_on_image_model(tf_server: Any, local: Local) -> None:
    """Image/handler.py models: each instance through the handler (TorchServe's envelope)."""
    from fastserve.core.dataplane import DataPlane

    image = pytest.importorskip("PIL.Image")
    if not hasattr(DataPlane, "predict_handler"):  # a core without the handler path
        error = error_of(post(tf_server, "/v1/models/picture:predict",
                              {"instances": [{"b64": "aGk="}]}), 501)
        assert "image_classifier" in error
        return
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    buf = io.BytesIO()
    image.fromarray(pixels, "RGB").save(buf, format="PNG")
    png = base64.b64encode(buf.getvalue()).decode()
    status, body = post(tf_server, "/v1/models/picture:predict",
                        {"instances": [{"b64": png}, {"data": png}]})
    assert status == 200 and set(body) == {"predictions"}
    # resize 4 / crop 4 leave a 4x4 image as it is: scale, normalize, C x H x W.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((pixels / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    probs = torch.softmax(run(local, "picture", torch.from_numpy(x)), dim=1)[0]
    want = {str(i): float(p) for i, p in enumerate(probs)}
    assert len(body["predictions"]) == 2
    for answer in body["predictions"]:
        assert sorted(answer) == sorted(want)
        assert list(answer.values()) == sorted(answer.values(), reverse=True)
        assert all(math.isclose(answer[k], want[k], rel_tol=1e-4) for k in want)
    assert "instances" in error_of(post(tf_server, "/v1/models/picture:predict",
                                        {"inputs": [{"b64": png}]}), 400)


# --- the Paperspace Gradient paths ------------------------------------------------------


def test_model_serving_alias(tf_server: Any, local: Local) -> None:
    for path in ("/model-serving/half_plus_three", "/model-serving/half_plus_three/versions/123",
                 "/model-serving/half_plus_three/labels/latest"):
        status, body = call(tf_server, "GET", path)
        assert status == 200 and body == {"name": "half_plus_three", "ready": True, **DOC_STATUS}
        status, body = call(tf_server, "GET", path + "/metadata")
        assert status == 200 and body["model_spec"]["version"] == "123"
        status, body = post(tf_server, path + ":predict", DOC_PREDICT)
        assert status == 200
        assert close(body["predictions"], run(local, "half_plus_three",
                                              torch.tensor([1.0, 2.0, 5.0]), version="123"))
        status, body = post(tf_server, path + ":regress", DOC_REGRESS)
        assert status == 200 and len(body["results"]) == 2
    status, body = post(tf_server, "/model-serving/iris:classify",
                        {"examples": [{"x": [1, 2, 3, 4]}]})
    assert status == 200 and [label for label, _ in body["results"][0]] == [
        "setosa", "versicolor", "virginica"]
    error_of(call(tf_server, "GET", "/model-serving/nope"), 404)


# --- a client written as TF Serving's docs and tutorials show -----------------------------


def test_requests_client_as_in_the_docs(tf_server: Any, local: Local) -> None:
    requests = pytest.importorskip("requests")
    base = tf_server.base_url
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    data = json.dumps({"signature_name": "serving_default", "instances": x.tolist()})
    headers = {"content-type": "application/json"}
    json_response = requests.post(f"{base}/v1/models/iris:predict", data=data, headers=headers)
    predictions = json.loads(json_response.text)["predictions"]
    assert json_response.status_code == 200
    assert close(predictions, run(local, "iris", torch.from_numpy(x)))
    # KServe v1 style: json=, then .json(); readiness from GET /v1/models/{m}.
    resp = requests.post(f"{base}/v1/models/half_plus_three:predict",
                         json={"instances": [1.0, 2.0, 5.0]})
    resp.raise_for_status()
    assert close(resp.json()["predictions"], run(local, "half_plus_three",
                                                 torch.tensor([1.0, 2.0, 5.0]), version="123"))
    ready = requests.get(f"{base}/v1/models/half_plus_three").json()
    assert ready["name"] == "half_plus_three" and ready["ready"] is True
    assert ready["model_version_status"][0]["state"] == "AVAILABLE"
    resp = requests.post(f"{base}/v1/models/half:predict", data=DOC_NOT_FOUND)
    assert resp.status_code == 404 and resp.headers["content-type"] == "application/json"
    assert set(resp.json()) == {"error"}
