"""KServe v2 / Open Inference Protocol against a real fastserve, over real HTTP.

Every inference answer is compared with the same model file run locally with torch
(``local_model``), never with constants. Error answers are checked against
CONTRACT.md §3: status, ``{"error": "<message>"}`` body, Retry-After on 503.
"""

from __future__ import annotations

import http.client
import json
import struct
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import fastserve

from models_factory import ALLTYPES, ALLTYPES_SHAPE

httpclient = pytest.importorskip("tritonclient.http")
ml_dtypes = pytest.importorskip("ml_dtypes")  # numpy bfloat16; tritonclient needs it too

NP_DTYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16,
    "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "BF16": ml_dtypes.bfloat16,
    "FP32": np.float32, "FP64": np.float64,
}


# Helpers


@pytest.fixture(scope="module")
def triton(server: Any) -> Iterator[Any]:
    """tritonclient.http.InferenceServerClient on the session server (closed afterwards)."""
    client = httpclient.InferenceServerClient(server.url)
    try:
        yield client
    finally:
        client.close()


def tensor(name: str, arr: np.ndarray, datatype: str, nested: bool = False) -> dict[str, Any]:
    """A v2 JSON input; ``nested`` sends the data as nested lists instead of flat."""
    values = arr.astype(np.float32) if datatype == "BF16" else arr
    data = values.tolist() if nested else values.ravel().tolist()
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data}


def run_local(model: Any, *arrays: np.ndarray) -> list[np.ndarray]:
    """The model run locally; outputs as numpy (BF16 as float32)."""
    args = []
    for a in arrays:
        if a.dtype == ml_dtypes.bfloat16:
            args.append(torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16))
        else:
            args.append(torch.from_numpy(np.ascontiguousarray(a)))
    with torch.inference_mode():
        out = model(*args)
    outs = out if isinstance(out, (tuple, list)) else [out]
    return [o.to(torch.float32).numpy() if o.dtype == torch.bfloat16 else o.numpy()
            for o in outs]


def json_outputs(doc: dict[str, Any]) -> dict[str, np.ndarray]:
    """A JSON v2 response's outputs as float64/int/bool arrays of their shapes."""
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in doc["outputs"]}


def assert_error(result: Any, status: int, *fragments: str) -> str:
    assert result.status == status, (result.status, result.body)
    assert result.header("Content-Type") == "application/json"
    doc = result.json()
    assert set(doc) == {"error"}, doc
    assert isinstance(doc["error"], str) and doc["error"]
    for fragment in fragments:
        assert fragment.lower() in doc["error"].lower(), doc["error"]
    return doc["error"]


def split_binary(result: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A binary-extension response: the JSON header and the outputs as arrays."""
    n = int(result.header("Inference-Header-Content-Length"))
    parsed = httpclient.InferResult.from_response_body(result.body, header_length=n)
    doc = json.loads(result.body[:n])
    return doc, {o["name"]: parsed.as_numpy(o["name"]) for o in doc["outputs"]}


def digits_rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 64), dtype=np.float32)


# Health and metadata


def test_live(server):
    r = server.get("/v2/health/live")
    assert r.status == 200 and r.json() == {"live": True}
    assert r.header("Content-Type") == "application/json"


def test_ready(server):
    r = server.get("/v2/health/ready")
    assert r.status == 200 and r.json() == {"ready": True}


def test_head_on_health_has_no_body(server):
    r = server.request("HEAD", "/v2/health/live")
    assert r.status == 200 and r.body == b""


def test_server_metadata(server):
    r = server.get("/v2")
    assert r.status == 200
    doc = r.json()
    assert doc["name"] == "fastserve"
    assert doc["version"] == fastserve.__version__
    assert isinstance(doc["extensions"], list)
    assert "binary_tensor_data" in doc["extensions"]


@pytest.mark.parametrize("name, platform, versions, inputs, outputs", [
    ("digits", "pytorch_export", ["1"], [("input__0", "FP32", [-1, 64])],
     [("output__0", "FP32", [-1, 10])]),
    ("digits_ts", "pytorch_torchscript", ["1"], [("input__0", "FP32", [-1, 64])],
     [("output__0", "FP32", [-1, 10])]),
    ("two_io", "pytorch_export", ["1"], [("a", "FP32", [-1, 4]), ("b", "INT64", [-1, 4])],
     [("sum", "FP32", [-1, 4]), ("twice", "INT64", [-1, 4])]),
    ("strlen", "pytorch_torchscript", ["1"], [("text", "BYTES", [-1])],
     [("length", "INT64", [-1]), ("upper", "BYTES", [-1])]),
    ("versioned", "pytorch_export", ["1", "2"], [("x", "FP32", [-1, 3])],
     [("y", "FP32", [-1, 3])]),
    ("half", "pytorch_export", ["1"], [("x", "FP16", [-1, 4])], [("y", "FP16", [-1, 4])]),
    ("alltypes", "pytorch_export", ["1"],
     [(f"input__{i}", t, list(ALLTYPES_SHAPE)) for i, t in enumerate(ALLTYPES)],
     [(f"output__{i}", t, list(ALLTYPES_SHAPE)) for i, t in enumerate(ALLTYPES)]),
])
def test_model_metadata(server, name, platform, versions, inputs, outputs):
    r = server.get(f"/v2/models/{name}")
    assert r.status == 200, r.body
    doc = r.json()
    assert doc["name"] == name
    assert doc["platform"] == platform
    assert doc["versions"] == versions
    assert doc["inputs"] == [{"name": n, "datatype": d, "shape": s} for n, d, s in inputs]
    assert doc["outputs"] == [{"name": n, "datatype": d, "shape": s} for n, d, s in outputs]
    assert server.get(f"/v2/models/{name}/versions/{versions[0]}").json() == doc


def test_model_metadata_errors(server):
    assert_error(server.get("/v2/models/nope"), 404, "nope")
    assert_error(server.get("/v2/models/versioned/versions/9"), 404, "9")


@pytest.mark.parametrize("path", ["/v2/models/digits/ready", "/v2/models/digits/versions/1/ready",
                                  "/v2/models/versioned/versions/1/ready"])
def test_model_ready(server, path):
    r = server.get(path)
    assert r.status == 200
    name = path.split("/")[3]
    assert r.json() == {"name": name, "ready": True}


@pytest.mark.parametrize("name", ["broken_config", "no_version"])
def test_failed_model_not_ready(server, name):
    r = server.get(f"/v2/models/{name}/ready")
    assert r.status == 503
    doc = r.json()
    assert doc["name"] == name and doc["ready"] is False
    # A FAILED model says why in every status API (CONTRACT §2).
    assert doc["error"]
    assert server.get(f"/v2/models/{name}").json()["error"] == doc["error"]


def test_failed_version_not_ready(server):
    r = server.get("/v2/models/broken_config/versions/1/ready")
    assert r.status == 503 and r.json()["ready"] is False


@pytest.mark.parametrize("path", ["/v2/models/nope/ready", "/v2/models/nope/versions/1/ready",
                                  "/v2/models/digits/versions/2/ready",
                                  "/v2/models/digits/versions/0/ready"])
def test_model_ready_unknown(server, path):
    assert_error(server.get(path), 404)


# Inference, JSON


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("model", ["digits", "digits_ts"])
def test_infer_digits(server, local_model, model, nested):
    x = digits_rows(3, seed=1)
    r = server.post(f"/v2/models/{model}/infer",
                    {"inputs": [tensor("input__0", x, "FP32", nested)]})
    assert r.status == 200, r.body
    assert r.header("Content-Type") == "application/json"
    doc = r.json()
    assert doc["model_name"] == model and doc["model_version"] == "1"
    assert "id" not in doc
    [out] = doc["outputs"]
    assert out["name"] == "output__0" and out["datatype"] == "FP32" and out["shape"] == [3, 10]
    [expected] = run_local(local_model(model), x)
    np.testing.assert_allclose(np.array(out["data"]).reshape(3, 10), expected, rtol=1e-5,
                               atol=1e-5)


def two_io_inputs(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, 4)).astype(np.float32)
    b = rng.integers(-(2**40), 2**40, (rows, 4), dtype=np.int64)
    return a, b


@pytest.mark.parametrize("rows", [1, 3, 20], ids=["1-row", "3-rows", "20-rows-split"])
def test_infer_two_inputs_two_outputs(server, local_model, rows):
    a, b = two_io_inputs(rows, seed=rows)
    r = server.post("/v2/models/two_io/infer",
                    {"inputs": [tensor("a", a, "FP32"), tensor("b", b, "INT64", nested=True)]})
    assert r.status == 200, r.body
    doc = r.json()
    assert [(o["name"], o["datatype"], o["shape"]) for o in doc["outputs"]] == [
        ("sum", "FP32", [rows, 4]), ("twice", "INT64", [rows, 4])]
    got = json_outputs(doc)
    want_sum, want_twice = run_local(local_model("two_io"), a, b)
    np.testing.assert_allclose(got["sum"], want_sum, rtol=1e-6)
    np.testing.assert_array_equal(got["twice"], want_twice)  # exact: int64 past 2**53 too


def test_infer_inputs_in_any_order(server, local_model):
    a, b = two_io_inputs(2, seed=7)
    r = server.post("/v2/models/two_io/infer",
                    {"inputs": [tensor("b", b, "INT64"), tensor("a", a, "FP32")]})
    assert r.status == 200, r.body
    want_sum, _ = run_local(local_model("two_io"), a, b)
    np.testing.assert_allclose(json_outputs(r.json())["sum"], want_sum, rtol=1e-6)


@pytest.mark.parametrize("wanted", [["twice"], ["sum"], ["twice", "sum"]])
def test_infer_outputs_selection(server, local_model, wanted):
    a, b = two_io_inputs(2, seed=3)
    r = server.post("/v2/models/two_io/infer", {
        "inputs": [tensor("a", a, "FP32"), tensor("b", b, "INT64")],
        "outputs": [{"name": n} for n in wanted]})
    assert r.status == 200, r.body
    doc = r.json()
    assert [o["name"] for o in doc["outputs"]] == wanted
    want = dict(zip(["sum", "twice"], run_local(local_model("two_io"), a, b), strict=True))
    for name, arr in json_outputs(doc).items():
        np.testing.assert_allclose(arr, want[name], rtol=1e-6)


def test_infer_id_echoed_and_parameters_accepted(server, local_model):
    x = digits_rows(1, seed=5)
    r = server.post("/v2/models/digits/infer", {
        "id": "request-42",
        "parameters": {"custom": "value", "n": 3, "flag": True, "priority": 0},
        "inputs": [dict(tensor("input__0", x, "FP32"), parameters={"note": "x"})],
        "outputs": [{"name": "output__0", "parameters": {"binary_data": False}}]})
    assert r.status == 200, r.body
    doc = r.json()
    assert doc["id"] == "request-42"
    [expected] = run_local(local_model("digits"), x)
    np.testing.assert_allclose(json_outputs(doc)["output__0"], expected, rtol=1e-5, atol=1e-5)


def test_version_routing(server, local_model):
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    body = {"inputs": [tensor("x", x, "FP32")]}
    answers = {}
    for path, version in [("/v2/models/versioned/versions/1/infer", "1"),
                          ("/v2/models/versioned/versions/2/infer", "2"),
                          ("/v2/models/versioned/infer", "2")]:  # default: the highest
        r = server.post(path, body)
        assert r.status == 200, r.body
        doc = r.json()
        assert doc["model_version"] == version
        [expected] = run_local(local_model("versioned", version), x)
        got = json_outputs(doc)["y"]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        answers[path] = got
    v1, v2, _ = answers.values()
    assert not np.allclose(v1, v2), "versions 1 and 2 must compute different things"


def test_versioned_metadata_per_version(server):
    r = server.get("/v2/models/versioned/versions/1")
    assert r.status == 200 and r.json()["versions"] == ["1", "2"]


def alltypes_arrays(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = ALLTYPES_SHAPE
    arrays = []
    for t in ALLTYPES:
        if t == "BOOL":
            arrays.append(rng.integers(0, 2, shape).astype(np.bool_))
        elif t in ("FP16", "FP32", "FP64"):
            arrays.append((rng.standard_normal(shape) * 4).astype(NP_DTYPES[t]))
        elif t == "BF16":  # exactly representable in bfloat16, whatever the rounding
            arrays.append((rng.integers(-64, 64, shape) / 8).astype(ml_dtypes.bfloat16))
        else:
            info = np.iinfo(NP_DTYPES[t])
            arrays.append(rng.integers(info.min, info.max, shape, dtype=NP_DTYPES[t],
                                       endpoint=False))
    return arrays


def check_alltypes_json(server, local_model, types: tuple[str, ...]) -> None:
    """Send the alltypes inputs of ``types`` as JSON (the others binary); check every output."""
    arrays = alltypes_arrays(seed=11)
    inputs, blobs = [], []
    for i, (t, a) in enumerate(zip(ALLTYPES, arrays, strict=True)):
        if t in types:
            inputs.append(tensor(f"input__{i}", a, t, nested=i % 2 == 0))
        else:
            inputs.append({"name": f"input__{i}", "shape": list(a.shape), "datatype": t,
                           "parameters": {"binary_data_size": a.nbytes}})
            blobs.append(a.tobytes())
    header = json.dumps({"inputs": inputs}).encode()
    r = server.post("/v2/models/alltypes/infer", header + b"".join(blobs),
                    {"Inference-Header-Content-Length": str(len(header))})
    assert r.status == 200, r.body
    doc = r.json()
    assert [o["datatype"] for o in doc["outputs"]] == list(ALLTYPES)
    got = json_outputs(doc)
    expected = run_local(local_model("alltypes"), *arrays)
    for i, (t, want) in enumerate(zip(ALLTYPES, expected, strict=True)):
        have = got[f"output__{i}"]
        assert have.shape == want.shape
        if t == "BOOL":
            assert have.dtype == np.bool_
            np.testing.assert_array_equal(have, want)
        elif t.startswith(("INT", "UINT")):
            np.testing.assert_array_equal(have, want, err_msg=t)
        else:
            tol = {"FP16": 1e-3, "BF16": 1e-2}.get(t, 1e-6)
            np.testing.assert_allclose(have, want.astype(np.float64), rtol=tol, err_msg=t)


def test_infer_every_datatype_json(server, local_model):
    """Every datatype but BF16 in JSON (BF16 binary here), every output as JSON."""
    check_alltypes_json(server, local_model, tuple(t for t in ALLTYPES if t != "BF16"))


def test_infer_bf16_json(server, local_model):
    """CONTRACT §3: FP16 and BF16 are accepted in JSON."""
    check_alltypes_json(server, local_model, ("BF16",))


def test_infer_fp16_batched_json(server, local_model):
    x = (np.random.default_rng(2).standard_normal((6, 4))).astype(np.float16)
    r = server.post("/v2/models/half/infer", {"inputs": [tensor("x", x, "FP16")]})
    assert r.status == 200, r.body
    [out] = r.json()["outputs"]
    assert out["datatype"] == "FP16" and out["shape"] == [6, 4]
    [expected] = run_local(local_model("half"), x)
    np.testing.assert_allclose(np.array(out["data"]).reshape(6, 4), expected, rtol=1e-3)


def test_infer_bytes_json(server, local_model):
    words = ["hello", "", "héllo wörld", "x" * 300]
    r = server.post("/v2/models/strlen/infer", {
        "inputs": [{"name": "text", "shape": [len(words)], "datatype": "BYTES", "data": words}]})
    assert r.status == 200, r.body
    doc = r.json()
    by_name = {o["name"]: o for o in doc["outputs"]}
    lengths, upper = local_model("strlen")(words)
    assert by_name["length"]["datatype"] == "INT64"
    np.testing.assert_array_equal(by_name["length"]["data"], lengths.numpy())
    assert by_name["upper"]["datatype"] == "BYTES"
    assert by_name["upper"]["shape"] == [len(words)]
    assert by_name["upper"]["data"] == upper


# Errors

DIGITS = "/v2/models/digits/infer"
ONE_ROW = {"name": "input__0", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}


def nested_body(depth: int) -> bytes:
    """An infer body whose data is 1.0 inside ``depth`` lists (built as text: no recursion)."""
    data = "[" * depth + "1.0" + "]" * depth
    head = b'{"inputs": [{"name": "input__0", "shape": [1], "datatype": "FP32", "data": '
    return head + data.encode() + b"}]}"


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "json"),
    (b"", "json"),
    (b"[1, 2]", "object"),
    (json.dumps({"inputs": []}).encode(), "inputs"),
    (json.dumps({"inputs": {"name": "input__0"}}).encode(), "inputs"),
    (json.dumps({"inputs": [dict(ONE_ROW, shape=[1, 63], data=[0.5] * 63)]}).encode(),
     "shape"),
    (json.dumps({"inputs": [dict(ONE_ROW, shape=[64])]}).encode(), "shape"),
    (json.dumps({"inputs": [dict(ONE_ROW, datatype="FP64")]}).encode(), "datatype"),
    (json.dumps({"inputs": [dict(ONE_ROW, datatype="INT32", data=[1] * 64)]}).encode(),
     "datatype"),
    (json.dumps({"inputs": [dict(ONE_ROW, datatype="FLOAT")]}).encode(), "datatype"),
    (json.dumps({"inputs": [dict(ONE_ROW, data=[0.5] * 63)]}).encode(), "element"),
    (json.dumps({"inputs": [dict(ONE_ROW, data=[0.5] * 65)]}).encode(), "element"),
    (json.dumps({"inputs": [dict(ONE_ROW, data=["a"] * 64)]}).encode(), "input__0"),
    (json.dumps({"inputs": [dict(ONE_ROW, shape=[1, -64])]}).encode(), "shape"),
    (json.dumps({"inputs": [dict(ONE_ROW, name="nope")]}).encode(), "nope"),
    (json.dumps({"inputs": [ONE_ROW, ONE_ROW]}).encode(), "input__0"),
    (json.dumps({"inputs": [ONE_ROW], "outputs": [{"name": "nope"}]}).encode(), "nope"),
    (json.dumps({"inputs": [ONE_ROW], "parameters": [1]}).encode(), "parameters"),
    (nested_body(101), "100"),
    (nested_body(3000), ""),
], ids=["bad-json", "empty-body", "not-object", "no-inputs", "inputs-not-list", "wrong-shape",
        "wrong-rank", "wrong-datatype-fp64", "wrong-datatype-int32", "unknown-datatype",
        "too-few-elements", "too-many-elements", "strings-for-fp32", "negative-dim",
        "unknown-input", "duplicate-input", "unknown-output", "parameters-not-object",
        "nesting-101", "nesting-3000"])
def test_infer_bad_request(server, body, fragment):
    assert_error(server.post(DIGITS, body), 400, fragment)


@pytest.mark.parametrize("depth", [
    2, 64, 100,
])
def test_nesting_up_to_100_is_accepted(server, local_model, depth):
    """Only the element count is checked: 64 values under ``depth`` levels of lists."""
    x = digits_rows(1, seed=23)
    data = "[" * (depth - 1) + json.dumps(x.ravel().tolist()) + "]" * (depth - 1)
    body = ('{"inputs": [{"name": "input__0", "shape": [1, 64], "datatype": "FP32", "data": '
            + data + "}]}")
    r = server.post(DIGITS, body)
    assert r.status == 200, r.body
    [expected] = run_local(local_model("digits"), x)
    np.testing.assert_allclose(json_outputs(r.json())["output__0"], expected, rtol=1e-5,
                               atol=1e-5)


def test_infer_missing_input(server):
    a, _ = two_io_inputs(1)
    assert_error(server.post("/v2/models/two_io/infer", {"inputs": [tensor("a", a, "FP32")]}),
                 400, "b")


def test_infer_rows_disagree(server):
    a, b = two_io_inputs(3)
    assert_error(server.post("/v2/models/two_io/infer", {
        "inputs": [tensor("a", a, "FP32"), tensor("b", b[:2], "INT64")]}), 400, "rows")


@pytest.mark.parametrize("values", [[1.5] * 8, ["1"] * 8, [2**63] * 8, [[1, 2]] * 8],
                         ids=["floats", "strings", "overflow", "ragged"])
def test_infer_bad_int64_values(server, values):
    a, _ = two_io_inputs(2)
    b = {"name": "b", "shape": [2, 4], "datatype": "INT64", "data": values}
    assert_error(server.post("/v2/models/two_io/infer", {"inputs": [tensor("a", a, "FP32"), b]}),
                 400, "b")


@pytest.mark.parametrize("path, status", [
    ("/v2/models/nope/infer", 404),
    ("/v2/models/nope/versions/1/infer", 404),
    ("/v2/models/digits/versions/7/infer", 404),
    ("/v2/models/versioned/versions/3/infer", 404),
])
def test_infer_unknown_model_or_version(server, path, status):
    assert_error(server.post(path, {"inputs": [ONE_ROW]}), status)


@pytest.mark.parametrize("path", ["/v2/models/broken_config/infer",
                                  "/v2/models/broken_config/versions/1/infer",
                                  "/v2/models/no_version/infer"])
def test_infer_failed_model_503(server, path):
    r = server.post(path, {"inputs": [ONE_ROW]})
    message = assert_error(r, 503)
    assert r.header("Retry-After") is not None
    assert int(r.header("Retry-After")) >= 0
    assert path.split("/")[3] in message


def test_failed_model_error_is_actionable(server):
    message = assert_error(server.post("/v2/models/broken_config/infer", {"inputs": [ONE_ROW]}),
                           503)
    assert "config.toml" in message  # the load error says what to fix


def test_model_raising_500(server, local_model):
    bad = np.array([[1.0, -1.0]], dtype=np.float32)
    message = assert_error(server.post("/v2/models/fragile/infer",
                                       {"inputs": [tensor("x", bad, "FP32")]}), 500)
    assert "negative" in message
    good = np.array([[1.0, 2.0]], dtype=np.float32)
    r = server.post("/v2/models/fragile/infer", {"inputs": [tensor("x", good, "FP32")]})
    assert r.status == 200
    [expected] = run_local(local_model("fragile"), good)
    np.testing.assert_allclose(json_outputs(r.json())["y"], expected)


def test_model_raising_fails_alone_in_a_batch(server, local_model):
    """Requests merged into one batch with a bad one: only the bad one fails."""
    rng = np.random.default_rng(4)
    inputs = [np.abs(rng.standard_normal((1, 2))).astype(np.float32) + 0.1 for _ in range(6)]
    inputs[2] = -inputs[2]
    results: list[Any] = [None] * len(inputs)
    barrier = threading.Barrier(len(inputs))

    def send(i: int) -> None:
        barrier.wait()
        results[i] = server.post("/v2/models/fragile/infer",
                                 {"inputs": [tensor("x", inputs[i], "FP32")]})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i, r in enumerate(results):
        if i == 2:
            assert_error(r, 500, "negative")
        else:
            assert r.status == 200, r.body
            [expected] = run_local(local_model("fragile"), inputs[i])
            np.testing.assert_allclose(json_outputs(r.json())["y"], expected)


@pytest.mark.parametrize("method, path", [
    ("GET", "/v2/models/digits/infer"),
    ("PUT", "/v2/models/digits/infer"),
    ("DELETE", "/v2/models/digits/versions/1/infer"),
    ("POST", "/v2/health/ready"),
    ("POST", "/v2/models/digits"),
])
def test_wrong_method_405(server, method, path):
    r = server.request(method, path)
    assert_error(r, 405)
    assert r.header("Allow")


def test_unknown_path_404(server):
    assert_error(server.get("/v2/nothing/here"), 404)


def test_non_utf8_bytes_is_400(server):
    header = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 6}}]}).encode()
    body = header + struct.pack("<I", 2) + b"\xff\xfe"
    r = server.post("/v2/models/strlen/infer", body, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream"})
    assert_error(r, 400, "utf-8")


@pytest.mark.parametrize("header_length, fragment", [
    ("abc", "Inference-Header-Content-Length"),
    ("-1", "Inference-Header-Content-Length"),
    ("100000", "Inference-Header-Content-Length"),
])
def test_binary_bad_header_length(server, header_length, fragment):
    r = server.post(DIGITS, json.dumps({"inputs": [ONE_ROW]}),
                    {"Inference-Header-Content-Length": header_length})
    assert_error(r, 400, fragment)


def binary_request(inputs: list[tuple[str, np.ndarray, str]], outputs: list[dict] | None = None,
                   parameters: dict | None = None, sizes: dict[str, int] | None = None
                   ) -> tuple[bytes, dict[str, str]]:
    """A hand-made binary-extension body (sizes overrides binary_data_size per input)."""
    doc: dict[str, Any] = {"inputs": []}
    blobs = []
    for name, arr, datatype in inputs:
        blob = arr.tobytes()
        size = (sizes or {}).get(name, len(blob))
        doc["inputs"].append({"name": name, "shape": list(arr.shape), "datatype": datatype,
                              "parameters": {"binary_data_size": size}})
        blobs.append(blob)
    if outputs is not None:
        doc["outputs"] = outputs
    if parameters is not None:
        doc["parameters"] = parameters
    header = json.dumps(doc).encode()
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header)),
                                      "Content-Type": "application/octet-stream"}


@pytest.mark.parametrize("size", [0, 255, 257])
def test_binary_size_mismatch(server, size):
    x = digits_rows(1)
    body, headers = binary_request([("input__0", x, "FP32")], sizes={"input__0": size})
    assert_error(server.post(DIGITS, body, headers), 400)


def test_binary_trailing_bytes(server):
    body, headers = binary_request([("input__0", digits_rows(1), "FP32")])
    assert_error(server.post(DIGITS, body + b"xx", headers), 400, "trailing")


def test_binary_data_and_size_both(server):
    header = json.dumps({"inputs": [dict(ONE_ROW, parameters={"binary_data_size": 256})]})
    body = header.encode() + digits_rows(1).tobytes()
    r = server.post(DIGITS, body, {"Inference-Header-Content-Length": str(len(header))})
    assert_error(r, 400, "only one")


# Binary data extension


def test_binary_in_binary_out_by_hand(server, local_model):
    a, b = two_io_inputs(5, seed=8)
    body, headers = binary_request([("a", a, "FP32"), ("b", b, "INT64")],
                                   outputs=[{"name": "twice", "parameters": {"binary_data": True}},
                                            {"name": "sum", "parameters": {"binary_data": True}}])
    r = server.post("/v2/models/two_io/infer", body, headers)
    assert r.status == 200, r.body
    assert r.header("Content-Type") == "application/octet-stream"
    doc, got = split_binary(r)
    # binary outputs in request order, each with its size and no data
    assert [o["name"] for o in doc["outputs"]] == ["twice", "sum"]
    assert all("data" not in o for o in doc["outputs"])
    assert [o["parameters"]["binary_data_size"] for o in doc["outputs"]] == [5 * 4 * 8,
                                                                             5 * 4 * 4]
    n = int(r.header("Inference-Header-Content-Length"))
    assert len(r.body) == n + 5 * 4 * 8 + 5 * 4 * 4
    want_sum, want_twice = run_local(local_model("two_io"), a, b)
    np.testing.assert_array_equal(got["twice"], want_twice)
    np.testing.assert_allclose(got["sum"], want_sum, rtol=1e-6)


def test_binary_mixed_json_and_binary_inputs(server, local_model):
    a, b = two_io_inputs(2, seed=9)
    header = json.dumps({"inputs": [tensor("a", a, "FP32"), {
        "name": "b", "shape": [2, 4], "datatype": "INT64",
        "parameters": {"binary_data_size": b.nbytes}}]}).encode()
    r = server.post("/v2/models/two_io/infer", header + b.tobytes(),
                    {"Inference-Header-Content-Length": str(len(header))})
    assert r.status == 200, r.body
    assert r.header("Content-Type") == "application/json"  # no binary output asked for
    want_sum, want_twice = run_local(local_model("two_io"), a, b)
    got = json_outputs(r.json())
    np.testing.assert_allclose(got["sum"], want_sum, rtol=1e-6)
    np.testing.assert_array_equal(got["twice"], want_twice)


def test_binary_data_output_parameter(server, local_model):
    """binary_data_output: every output binary, unless an output says otherwise."""
    a, b = two_io_inputs(2, seed=10)
    body, headers = binary_request(
        [("a", a, "FP32"), ("b", b, "INT64")], parameters={"binary_data_output": True})
    r = server.post("/v2/models/two_io/infer", body, headers)
    assert r.status == 200, r.body
    doc, got = split_binary(r)
    assert all("binary_data_size" in o["parameters"] for o in doc["outputs"])
    want_sum, want_twice = run_local(local_model("two_io"), a, b)
    np.testing.assert_allclose(got["sum"], want_sum, rtol=1e-6)
    np.testing.assert_array_equal(got["twice"], want_twice)

    body, headers = binary_request(
        [("a", a, "FP32"), ("b", b, "INT64")], parameters={"binary_data_output": True},
        outputs=[{"name": "sum", "parameters": {"binary_data": False}}, {"name": "twice"}])
    r = server.post("/v2/models/two_io/infer", body, headers)
    doc, got = split_binary(r)
    by_name = {o["name"]: o for o in doc["outputs"]}
    assert "data" in by_name["sum"] and "data" not in by_name["twice"]
    np.testing.assert_allclose(got["sum"], want_sum, rtol=1e-6)
    np.testing.assert_array_equal(got["twice"], want_twice)


@pytest.mark.parametrize("parameters, outputs", [
    ({"binary_data_output": "false"}, None),
    ({"binary_data_output": 1}, None),
    (None, [{"name": "sum", "parameters": {"binary_data": "no"}}]),
], ids=["string-false", "number", "output-string"])
def test_binary_flags_must_be_booleans(server, parameters, outputs):
    """A string "false" must not silently read as true."""
    a, b = two_io_inputs(1)
    body, headers = binary_request([("a", a, "FP32"), ("b", b, "INT64")],
                                   parameters=parameters, outputs=outputs)
    assert_error(server.post("/v2/models/two_io/infer", body, headers), 400, "true or false")


@pytest.mark.parametrize("model", ["digits", "digits_ts"])
def test_raw_binary_request(server, local_model, model):
    """Inference-Header-Content-Length: 0: the body is the one input's bytes, batch 1."""
    x = digits_rows(1, seed=12)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body=x.tobytes(), headers={
            "Inference-Header-Content-Length": "0", "Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        assert resp.getheader("Content-Type") == "application/octet-stream"
        n = int(resp.getheader("Inference-Header-Content-Length"))
    finally:
        conn.close()
    doc = json.loads(body[:n])
    [out] = doc["outputs"]
    assert out["shape"] == [1, 10] and out["parameters"]["binary_data_size"] == 40
    got = np.frombuffer(body[n:], dtype="<f4").reshape(1, 10)
    [expected] = run_local(local_model(model), x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_raw_binary_request_bad_length(server):
    r = server.post(DIGITS, b"\0" * 255, {"Inference-Header-Content-Length": "0",
                                          "Content-Type": "application/octet-stream"})
    assert_error(r, 400)


def test_raw_binary_request_needs_one_input(server):
    r = server.post("/v2/models/two_io/infer", b"\0" * 48,
                    {"Inference-Header-Content-Length": "0"})
    assert_error(r, 400, "one input")


def test_raw_binary_bytes_request(server, local_model):
    """Raw mode with a BYTES input: the whole body is the one element."""
    text = "hello wörld"
    r = server.post("/v2/models/strlen/infer", text.encode(), {
        "Inference-Header-Content-Length": "0", "Content-Type": "application/octet-stream"})
    assert r.status == 200, r.body
    _, got = split_binary(r)
    lengths, upper = local_model("strlen")([text])
    np.testing.assert_array_equal(got["length"], lengths.numpy())
    assert list(got["upper"]) == [u.encode() for u in upper]


def test_binary_input_takes_the_rest_of_the_body(server, local_model):
    """OVMS: the one input with neither data nor binary_data_size takes the rest."""
    x = digits_rows(2, seed=18)
    header = json.dumps({"inputs": [{"name": "input__0", "shape": [2, 64],
                                     "datatype": "FP32"}]}).encode()
    r = server.post(DIGITS, header + x.tobytes(),
                    {"Inference-Header-Content-Length": str(len(header))})
    assert r.status == 200, r.body
    [expected] = run_local(local_model("digits"), x)
    np.testing.assert_allclose(json_outputs(r.json())["output__0"], expected, rtol=1e-5,
                               atol=1e-5)


def test_input_without_data_in_plain_json(server):
    r = server.post(DIGITS, {"inputs": [{"name": "input__0", "shape": [1, 64],
                                         "datatype": "FP32"}]})
    assert_error(r, 400, "input__0")


def test_query_string_is_ignored(server, local_model):
    x = digits_rows(1, seed=19)
    r = server.post(DIGITS + "?trace=1&x=%20", {"inputs": [tensor("input__0", x, "FP32")]})
    assert r.status == 200, r.body
    [expected] = run_local(local_model("digits"), x)
    np.testing.assert_allclose(json_outputs(r.json())["output__0"], expected, rtol=1e-5,
                               atol=1e-5)


# HTTP behaviour on the v2 paths (CONTRACT §3 "HTTP behaviour")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_and_response(server, local_model, encoding):
    import gzip
    import zlib

    x = digits_rows(2, seed=20)
    raw = json.dumps({"inputs": [tensor("input__0", x, "FP32")]}).encode()
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    r = server.post(DIGITS, body, {"Content-Encoding": encoding, "Accept-Encoding": encoding})
    assert r.status == 200, r.body
    assert r.header("Content-Encoding") == encoding
    plain = gzip.decompress(r.body) if encoding == "gzip" else zlib.decompress(r.body)
    [expected] = run_local(local_model("digits"), x)
    np.testing.assert_allclose(json_outputs(json.loads(plain))["output__0"], expected,
                               rtol=1e-5, atol=1e-5)


def test_bad_compressed_body_400(server):
    r = server.post(DIGITS, b"not gzip at all", {"Content-Encoding": "gzip"})
    assert_error(r, 400)


def test_chunked_request_body(server, local_model):
    x = digits_rows(3, seed=21)
    raw = json.dumps({"inputs": [tensor("input__0", x, "FP32")]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        chunks = iter([raw[:10], raw[10:500], raw[500:]])
        conn.request("POST", DIGITS, body=chunks, encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        doc = json.loads(resp.read())
        assert resp.status == 200, doc
    finally:
        conn.close()
    [expected] = run_local(local_model("digits"), x)
    np.testing.assert_allclose(json_outputs(doc)["output__0"], expected, rtol=1e-5, atol=1e-5)


def read_response(sock_file: Any) -> tuple[int, dict[str, str], bytes]:
    status_line = sock_file.readline()
    status = int(status_line.split()[1])
    headers = {}
    while (line := sock_file.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = sock_file.read(int(headers.get("content-length", 0)))
    return status, headers, body


def raw_post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_pipelined_requests_answered_in_order(server, local_model):
    """Several requests in one write, mixing good and bad: answers in request order."""
    import socket

    xs = [digits_rows(1 + i % 2, seed=30 + i) for i in range(4)]
    bodies = [json.dumps({"id": str(i), "inputs": [tensor("input__0", x, "FP32")]}).encode()
              for i, x in enumerate(xs)]
    wire = b"".join([raw_post(DIGITS, bodies[0]), raw_post(DIGITS, b"{bad"),
                     raw_post("/v2/models/digits_ts/infer", bodies[1]),
                     raw_post(DIGITS, bodies[2]), raw_post(DIGITS, bodies[3])])
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(wire)
        with sock.makefile("rb") as f:
            answers = [read_response(f) for _ in range(5)]
    assert [a[0] for a in answers] == [200, 400, 200, 200, 200]
    for (_, _, body), i in zip([answers[0], *answers[2:]], range(4), strict=True):
        doc = json.loads(body)
        assert doc["id"] == str(i)
        model = "digits_ts" if i == 1 else "digits"
        [expected] = run_local(local_model(model), xs[i])
        np.testing.assert_allclose(json_outputs(doc)["output__0"], expected, rtol=1e-5,
                                   atol=1e-5)


def test_expect_100_continue(server, local_model):
    import socket

    x = digits_rows(1, seed=40)
    body = json.dumps({"inputs": [tensor("input__0", x, "FP32")]}).encode()
    head = raw_post(DIGITS, b"", "Expect: 100-continue\r\n")
    head = head.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode())
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        with sock.makefile("rb") as f:
            assert f.readline().startswith(b"HTTP/1.1 100")
            assert f.readline() == b"\r\n"
            sock.sendall(body)
            status, _, answer = read_response(f)
    assert status == 200, answer
    [expected] = run_local(local_model("digits"), x)
    np.testing.assert_allclose(json_outputs(json.loads(answer))["output__0"], expected,
                               rtol=1e-5, atol=1e-5)


# tritonclient.http as the reference client


def triton_input(name: str, arr: np.ndarray, datatype: str, binary: bool = True) -> Any:
    inp = httpclient.InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr, binary_data=binary)
    return inp


def test_tritonclient_health_and_metadata(triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("digits")
    assert triton.is_model_ready("versioned", "1")
    assert not triton.is_model_ready("broken_config")
    meta = triton.get_server_metadata()
    assert meta["name"] == "fastserve"
    assert triton.get_model_metadata("two_io")["inputs"][1]["datatype"] == "INT64"


@pytest.mark.parametrize("binary_in, binary_out", [(True, True), (True, False), (False, True),
                                                   (False, False)])
def test_tritonclient_digits(triton, local_model, binary_in, binary_out):
    x = digits_rows(4, seed=13)
    result = triton.infer("digits", [triton_input("input__0", x, "FP32", binary_in)],
                          outputs=[httpclient.InferRequestedOutput("output__0",
                                                                   binary_data=binary_out)],
                          request_id="abc")
    assert result.get_response()["id"] == "abc"
    [expected] = run_local(local_model("digits"), x)
    np.testing.assert_allclose(result.as_numpy("output__0"), expected, rtol=1e-5, atol=1e-5)


def test_tritonclient_two_io(triton, local_model):
    a, b = two_io_inputs(9, seed=14)  # > max_batch_size 8: split and joined
    result = triton.infer("two_io", [triton_input("a", a, "FP32"), triton_input("b", b, "INT64")])
    want_sum, want_twice = run_local(local_model("two_io"), a, b)
    np.testing.assert_allclose(result.as_numpy("sum"), want_sum, rtol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("twice"), want_twice)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_bytes(triton, local_model, binary):
    words = ["alpha", "", "héllo", "日本語", "z" * 1000]
    arr = np.array([w.encode("utf-8") for w in words], dtype=object)
    result = triton.infer("strlen", [triton_input("text", arr, "BYTES", binary)], outputs=[
        httpclient.InferRequestedOutput("length", binary_data=binary),
        httpclient.InferRequestedOutput("upper", binary_data=binary)])
    lengths, upper = local_model("strlen")(words)
    np.testing.assert_array_equal(result.as_numpy("length"), lengths.numpy())
    got = result.as_numpy("upper")
    assert got.shape == (len(words),)
    assert [g if isinstance(g, bytes) else str(g).encode() for g in got] == [
        u.encode("utf-8") for u in upper]


def test_tritonclient_every_datatype_binary(triton, local_model):
    arrays = alltypes_arrays(seed=15)
    inputs = [triton_input(f"input__{i}", a, t)
              for i, (t, a) in enumerate(zip(ALLTYPES, arrays, strict=True))]
    result = triton.infer("alltypes", inputs)
    expected = run_local(local_model("alltypes"), *arrays)
    for i, (t, want) in enumerate(zip(ALLTYPES, expected, strict=True)):
        got = result.as_numpy(f"output__{i}")
        assert got.shape == ALLTYPES_SHAPE
        if t == "BF16":
            np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-2, err_msg=t)
        elif t in ("FP16", "FP32", "FP64"):
            assert got.dtype == NP_DTYPES[t]
            np.testing.assert_allclose(got, want, rtol=1e-3, err_msg=t)
        else:
            assert got.dtype == NP_DTYPES[t], t
            np.testing.assert_array_equal(got, want, err_msg=t)


def test_tritonclient_fp16_bf16_match_torch_exactly(triton, local_model):
    """Binary FP16/BF16 travel bit-exact: the answer equals torch's to the bit."""
    arrays = alltypes_arrays(seed=16)
    inputs = [triton_input(f"input__{i}", a, t)
              for i, (t, a) in enumerate(zip(ALLTYPES, arrays, strict=True))]
    result = triton.infer("alltypes", inputs, outputs=[
        httpclient.InferRequestedOutput(f"output__{ALLTYPES.index(t)}") for t in ("FP16", "BF16")])
    args = [torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16) if t == "BF16"
            else torch.from_numpy(a) for t, a in zip(ALLTYPES, arrays, strict=True)]
    with torch.inference_mode():
        out = local_model("alltypes")(*args)
    fp16 = out[ALLTYPES.index("FP16")].numpy()
    bf16 = out[ALLTYPES.index("BF16")].view(torch.uint16).numpy()
    assert result.as_numpy(f"output__{ALLTYPES.index('FP16')}").tobytes() == fp16.tobytes()
    assert result.as_numpy(f"output__{ALLTYPES.index('BF16')}").tobytes() == bf16.tobytes()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compression(triton, local_model, algorithm):
    a, b = two_io_inputs(3, seed=22)
    result = triton.infer("two_io", [triton_input("a", a, "FP32"), triton_input("b", b, "INT64")],
                          request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    want_sum, want_twice = run_local(local_model("two_io"), a, b)
    np.testing.assert_allclose(result.as_numpy("sum"), want_sum, rtol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("twice"), want_twice)


def test_tritonclient_versions(triton, local_model):
    x = np.full((1, 3), 0.25, dtype=np.float32)
    for version in ("1", "2"):
        result = triton.infer("versioned", [triton_input("x", x, "FP32")], model_version=version)
        [expected] = run_local(local_model("versioned", version), x)
        np.testing.assert_allclose(result.as_numpy("y"), expected)
        assert result.get_response()["model_version"] == version


def test_tritonclient_errors(triton):
    from tritonclient.utils import InferenceServerException

    x = digits_rows(1)
    with pytest.raises(InferenceServerException) as info:
        triton.infer("nope", [triton_input("input__0", x, "FP32")])
    assert info.value.status() in ("404", 404)
    with pytest.raises(InferenceServerException) as info:
        triton.infer("digits", [triton_input("input__0", x[:, :32], "FP32")])
    assert info.value.status() in ("400", 400)


# Connections and concurrency


def test_bad_request_keeps_the_connection(server, local_model):
    """A 4xx on a keep-alive connection leaves it usable for the next request."""
    x = digits_rows(1, seed=17)
    good = json.dumps({"inputs": [tensor("input__0", x, "FP32")]}).encode()
    [expected] = run_local(local_model("digits"), x)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        sock = None
        for body, path, status in [
            (b"{not json", DIGITS, 400),
            (good, DIGITS, 200),
            (json.dumps({"inputs": [dict(ONE_ROW, data=[1.0] * 3)]}).encode(), DIGITS, 400),
            (good, "/v2/models/nope/infer", 404),
            (good, "/v2/models/broken_config/infer", 503),
            (json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                                     "data": [-1.0, 1.0]}]}).encode(),
             "/v2/models/fragile/infer", 500),
            (good, DIGITS, 200),
        ]:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == status, (path, data)
            assert not resp.will_close, "the server closed a keep-alive connection"
            if sock is None:
                sock = conn.sock
            assert conn.sock is sock, "the connection was not reused"
            if status == 200:
                out = json.loads(data)["outputs"][0]["data"]
                np.testing.assert_allclose(np.array(out).reshape(1, 10), expected, rtol=1e-5,
                                           atol=1e-5)
        conn.request("GET", DIGITS)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 405 and conn.sock is sock
    finally:
        conn.close()


def test_concurrent_requests_each_get_their_own_answer(server, local_model):
    threads_n, per_thread = 16, 6
    model = local_model("digits")
    work = {(t, i): digits_rows(1 + (t + i) % 3, seed=1000 + 10 * t + i)
            for t in range(threads_n) for i in range(per_thread)}
    expected = {k: run_local(model, x)[0] for k, x in work.items()}
    failures: list[str] = []
    barrier = threading.Barrier(threads_n)

    def client(t: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            barrier.wait()
            for i in range(per_thread):
                x = work[(t, i)]
                path = DIGITS if (t + i) % 2 else "/v2/models/digits_ts/infer"
                conn.request("POST", path, body=json.dumps(
                    {"id": f"{t}-{i}", "inputs": [tensor("input__0", x, "FP32")]}))
                resp = conn.getresponse()
                doc = json.loads(resp.read())
                if resp.status != 200:
                    failures.append(f"{t}-{i}: {resp.status} {doc}")
                    continue
                if doc["id"] != f"{t}-{i}":
                    failures.append(f"{t}-{i}: got the answer of {doc['id']}")
                got = np.array(doc["outputs"][0]["data"]).reshape(doc["outputs"][0]["shape"])
                if got.shape != expected[(t, i)].shape or not np.allclose(
                        got, expected[(t, i)], rtol=1e-5, atol=1e-5):
                    failures.append(f"{t}-{i}: wrong answer")
        except Exception as exc:  # reported below, not lost in the thread
            failures.append(f"{t}: {exc!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not failures, failures[:5]


def test_concurrent_binary_two_io(server, local_model):
    """Binary requests of different row counts, merged by the batcher, split back right."""
    n = 12
    work = [two_io_inputs(1 + i % 4, seed=200 + i) for i in range(n)]
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def send(i: int) -> None:
        a, b = work[i]
        body, headers = binary_request([("a", a, "FP32"), ("b", b, "INT64")],
                                       parameters={"binary_data_output": True})
        barrier.wait()
        results[i] = server.post("/v2/models/two_io/infer", body, headers)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    model = local_model("two_io")
    for (a, b), r in zip(work, results, strict=True):
        assert r.status == 200, r.body
        _, got = split_binary(r)
        want_sum, want_twice = run_local(model, a, b)
        np.testing.assert_allclose(got["sum"], want_sum, rtol=1e-6)
        np.testing.assert_array_equal(got["twice"], want_twice)
