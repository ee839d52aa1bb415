"""The v2 decoder's fast paths (plain JSON inputs, plain binary inputs) give exactly what
its general path gives: the same arrays, or the same error message."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fastserve.errors import InvalidInputError
from fastserve.frontends import _v2_request, kserve_v2
from fastserve.frontends.kserve_v2 import KServeV2Frontend
from fastserve.http.messages import Request

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
    from fastserve.types import InferResponse
    small = fe.encode(InferResponse("m", "1", {"y": X}), options, ())
    assert small.buffers is None
    n = int(dict(small.headers)[b"inference-header-content-length"])
    assert json.loads(small.body[:n])["outputs"][0]["parameters"] == size(24)
    assert bytes(small.body[n:]) == X.tobytes()
    big_x = np.zeros(kserve_v2.JOIN_BELOW // 4 + 1, dtype=np.float32)
    big = fe.encode(InferResponse("m", "1", {"y": big_x}), options, ())
    assert big.buffers is not None and bytes(big.buffers[0]) == big_x.tobytes()
