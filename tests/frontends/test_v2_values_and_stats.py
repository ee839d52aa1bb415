"""Values that must be measured or written as the contract says (issue 16, 2.9 and 2.10):
non-finite JSON outputs, outputs requested twice, refused requests counted as failures,
compute_input/compute_output measured, memoryUsage the serving process's RSS."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
import pytest

httpclient = pytest.importorskip("tritonclient.http")

X_NONFINITE = np.array([[np.nan, np.inf, -np.inf]], dtype=np.float32)


def _binary_infer(server: Any, x: np.ndarray, outputs: list[dict[str, Any]]) -> Any:
    header = orjson.dumps({
        "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes}}],
        "outputs": outputs})
    return server.request("POST", "/v2/models/versioned/versions/1/infer", header + x.tobytes(),
                          {"Content-Type": "application/octet-stream",
                           "Inference-Header-Content-Length": str(len(header))})


def test_nonfinite_json_outputs_are_tokens(server: Any) -> None:
    result = _binary_infer(server, X_NONFINITE, [{"name": "y"}])
    assert result.status == 200, result.body
    assert b'"data":[NaN,Infinity,-Infinity]' in result.body, result.body
    client = httpclient.InferenceServerClient(server.url)
    try:
        inp = httpclient.InferInput("x", [1, 3], "FP32")
        inp.set_data_from_numpy(X_NONFINITE, binary_data=True)
        got = client.infer("versioned", [inp], model_version="1", outputs=[
            httpclient.InferRequestedOutput("y", binary_data=False)]).as_numpy("y")
    finally:
        client.close()
    np.testing.assert_array_equal(got, X_NONFINITE + 1)  # x + 1: NaN, inf, -inf stay


def test_output_requested_twice_is_400(server: Any) -> None:
    result = _binary_infer(server, np.zeros((1, 3), np.float32), [{"name": "y"}, {"name": "y"}])
    assert result.status == 400
    assert orjson.loads(result.body) == {"error": "output 'y' is requested more than once"}


def _stats(server: Any, model: str, version: str) -> dict[str, Any]:
    status, _, body = server.request("GET", f"/v2/models/{model}/versions/{version}/stats")
    assert status == 200
    return orjson.loads(body)["model_stats"][0]["inference_stats"]


def test_refused_requests_count_as_fail(server: Any) -> None:
    before = _stats(server, "versioned", "2")["fail"]["count"]
    path = "/v2/models/versioned/versions/2/infer"
    bad = [  # wrong shape (data plane), ragged data and an unknown datatype (decoding)
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
        {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                     "data": [[1, 2, 3], [4]]}]},
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP33", "data": [1, 2, 3]}]},
    ]
    for body in bad:
        assert server.request("POST", path, orjson.dumps(body))[0] == 400
    assert _stats(server, "versioned", "2")["fail"]["count"] == before + len(bad)


def test_compute_input_and_output_are_measured(server: Any) -> None:
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                                     "data": [1, 2, 3, 4, 5, 6]}]})
    for _ in range(5):
        assert server.request("POST", "/v2/models/versioned/versions/2/infer", body)[0] == 200
    stats = _stats(server, "versioned", "2")
    for key in ("compute_input", "compute_infer", "compute_output"):
        assert stats[key]["count"] >= 5 and stats[key]["ns"] > 0, (key, stats)
    # Each is a part of the request's time, never more than it.
    assert stats["compute_input"]["ns"] + stats["compute_output"]["ns"] < \
        stats["success"]["ns"]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_usage_is_the_serving_process_rss(server: Any) -> None:
    status, _, body = server.request("GET", "/models/versioned", port=server.management_port)
    assert status == 200
    usage = orjson.loads(body)[0]["workers"][0]["memoryUsage"]
    rss = _rss(server.process.pid)
    assert usage > 50 * 2**20  # torch is loaded: tens of MB at least
    assert 0.5 * rss < usage < 2 * rss, (usage, rss)




def test_tf_serving_refusals_count_as_fail(server: Any) -> None:
    before = _stats(server, "versioned", "2")["fail"]["count"]
    ragged = {"instances": [[1.0, 2.0, 3.0], [4.0]]}
    assert server.request("POST", "/v1/models/versioned/versions/2:predict",
                          orjson.dumps(ragged))[0] == 400
    assert _stats(server, "versioned", "2")["fail"]["count"] == before + 1
