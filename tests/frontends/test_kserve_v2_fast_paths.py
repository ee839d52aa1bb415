"""The v2 decoder's fast paths (plain JSON inputs, plain binary inputs) give exactly what
its general path gives: the same arrays, or the same error message."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fastserve.errors import InvalidInputError
from fastserve.frontends import _v2_request, kserve_v2
from fastserve.frontends._v2_answer import plain_json_answer
from fastserve.frontends.kserve_v2 import KServeV2Frontend
from fastserve.http.messages import Request
from fastserve.types import DataType, InferResponse, TensorSpec

X = np.arange(6, dtype=np.float32).reshape(2, 3)


def binary(inputs: list[dict[str, Any]], tail: bytes) -> Request:
    header = json.dumps({"inputs": inputs}).encode()
    return Request("POST", "/v2/models/m/infer", "",
                   {b"inference-header-content-length": str(len(header)).encode()},
                   bytearray(header + tail))


def decode(request: Request) -> Any:
    try:
        infer, _ = _v2_request.decode(request, (), None)  # type: ignore[arg-type]
        return {k: (v.dtype, v.shape, v.tolist() if v.dtype == object else v.tobytes())
                for k, v in infer.inputs.items()}
    except InvalidInputError as exc:
        return str(exc)


def size(n: int) -> dict[str, int]:
    return {"binary_data_size": n}


@pytest.mark.parametrize("inputs, tail", [
    ([{"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": size(24)}], X.tobytes()),
    ([{"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": size(24)},
      {"name": "b", "shape": [1], "datatype": "INT64", "parameters": size(8)}],
     X.tobytes() + b"\1" * 8),
    ([{"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": size(20)}], X.tobytes()),
    ([{"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": size(24)}], b"\0" * 30),
    ([{"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": size(24)}] * 2,
     X.tobytes() * 2),
    ([{"name": "a", "shape": [2, 3], "datatype": "FP33", "parameters": size(24)}], X.tobytes()),
    ([{"name": "a", "shape": [2, -3], "datatype": "FP32", "parameters": size(24)}], X.tobytes()),
    ([{"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": size(24),
       "data": [1]}], X.tobytes()),
    ([{"name": "a", "shape": [1], "datatype": "BYTES", "parameters": size(6)}],
     b"\2\0\0\0hi"),
    ([{"name": "a", "shape": [3], "datatype": "BOOL", "parameters": size(3)}], b"\1\0\1"),
    ([{"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": {
        "binary_data_size": 24, "x": 1}}], X.tobytes()),
    ([{"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": size(True)}],
     X.tobytes()),
    ([{"shape": [2, 3], "datatype": "FP32", "parameters": size(24)}], X.tobytes()),
])
def test_plain_binary_inputs_match_the_general_path(monkeypatch, inputs, tail):
    fast = decode(binary(inputs, tail))
    monkeypatch.setattr(_v2_request, "_plain_binary_inputs", lambda raw, tail: None)
    assert fast == decode(binary(inputs, tail))


def test_small_binary_outputs_travel_in_one_body():
    fe = KServeV2Frontend(None)  # type: ignore[arg-type]
    options = _v2_request.OutputOptions(True, {})
    small = fe.encode(InferResponse("m", "1", {"y": X}), options, ())
    assert small.buffers is None
    n = int(dict(small.headers)[b"inference-header-content-length"])
    assert json.loads(small.body[:n])["outputs"][0]["parameters"] == size(24)
    assert bytes(small.body[n:]) == X.tobytes()
    big_x = np.zeros(kserve_v2.JOIN_BELOW // 4 + 1, dtype=np.float32)
    big = fe.encode(InferResponse("m", "1", {"y": big_x}), options, ())
    assert big.buffers is not None and bytes(big.buffers[0]) == big_x.tobytes()


def _general_answer(monkeypatch, response: Any, specs: tuple[Any, ...]) -> bytes:
    monkeypatch.setattr(kserve_v2, "plain_json_answer", lambda response, specs: None)
    body = KServeV2Frontend(None).encode(response, _v2_request.ALL_JSON, specs).body  # type: ignore[arg-type]
    monkeypatch.undo()
    return body


BF16_SPEC = TensorSpec("y", DataType.BF16, (-1,))


@pytest.mark.parametrize("outputs, specs, request_id", [
    ({"y": X}, (), None),
    ({"y": X, "z": np.arange(4, dtype=np.int64)}, (), "req-7"),
    ({"y": X.T}, (), None),  # not contiguous: written in C order, as the general path does
    ({"y": np.array([0.5, np.nan, np.inf, -np.inf], dtype=np.float32)}, (), None),
    ({"y": np.array([1.5, -2.25], dtype=np.float16)}, (), None),
    ({"y": np.array([True, False])}, (), None),
    ({"y": np.array(3.5, dtype=np.float32)}, (), None),  # 0-d
    ({"y": np.array([16256, 16320], dtype=np.uint16)}, (BF16_SPEC,), None),
    ({"y": np.array([b"ab", b"c"], dtype=object)}, (), None),
    ({"y": np.array([1, 2], dtype=np.uint16)}, (TensorSpec("y", DataType.UINT16, (-1,)),),
     None),
])
def test_plain_json_answer_matches_the_general_path(monkeypatch, outputs, specs, request_id):
    response = InferResponse("nullable-model", "1", outputs, request_id)
    fast = KServeV2Frontend(None).encode(response, _v2_request.ALL_JSON, specs)  # type: ignore[arg-type]
    assert fast.body == _general_answer(monkeypatch, response, specs)
    assert fast.buffers is None and fast.headers is None
    assert json.loads(fast.body.replace(b"NaN", b"0").replace(b"Infinity", b"1"))[
        "model_name"] == "nullable-model"


def test_plain_json_answer_declines_what_it_does_not_write():
    finite = InferResponse("m", "1", {"y": X}, None)
    assert plain_json_answer(finite, ()) is not None
    for outputs, specs in (({"y": np.array([np.nan], dtype=np.float32)}, ()),
                           ({"y": np.array([1], dtype=np.uint16)}, (BF16_SPEC,)),
                           ({"y": np.array([b"a"], dtype=object)}, ()),
                           ({"y": np.float32(1.0)}, ())):
        assert plain_json_answer(InferResponse("m", "1", outputs, None), specs) is None


@pytest.mark.parametrize("doc", [
    {"inputs": [{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": X.ravel().tolist()}]},
    {"id": 12, "inputs": [{"name": "a", "shape": [2, 3], "datatype": "FP32",
                           "data": X.ravel().tolist()}]},
    {"inputs": [{"name": "a", "shape": [6], "datatype": "INT32", "data": list(range(6))}],
     "parameters": {}},
    {"inputs": [{"name": "a", "shape": [6], "datatype": "INT32", "data": list(range(6))}],
     "outputs": []},
    {"inputs": [{"name": "a", "shape": [6], "datatype": "INT32", "data": list(range(6))}],
     "parameters": None, "outputs": None},
])
def test_a_request_without_parameters_or_outputs_decodes_as_before(doc):
    request = Request("POST", "/v2/models/m/infer", "", {}, bytearray(json.dumps(doc).encode()))
    infer, options = _v2_request.decode(request, (), None)  # type: ignore[arg-type]
    assert (infer.outputs, infer.parameters) == (None, {})
    assert infer.id == (None if doc.get("id") is None else str(doc["id"]))
    assert (options.binary_default, options.binary, options.classification,
            options.shared_memory) == (False, {}, {}, {})
    assert np.array_equal(infer.inputs["a"].ravel(), np.asarray(doc["inputs"][0]["data"]))


@pytest.mark.parametrize("shape", [[2, 3], [2, -3], [2, 3.0], [2, True], "23", [6, 1, 1]])
def test_plain_json_inputs_check_each_dimension(monkeypatch, shape):
    doc = {"inputs": [{"name": "a", "shape": shape, "datatype": "FP32",
                       "data": X.ravel().tolist()}]}
    request = Request("POST", "/v2/models/m/infer", "", {}, bytearray(json.dumps(doc).encode()))
    fast = decode(request)
    monkeypatch.setattr(_v2_request, "_plain_json_inputs", lambda raw: None)
    assert fast == decode(request)
