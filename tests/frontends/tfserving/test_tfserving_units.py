"""TF Serving pieces without a server: NaN tokens, b64 values, the _bytes rule, states."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastserve.errors import InvalidInputError
from fastserve.frontends import _tf_examples, _tf_inputs, _tfjson


def test_tfjson_loads_strict_and_tokens() -> None:
    assert _tfjson.loads(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    doc = _tfjson.loads(bytearray(b'{"a": [NaN, Infinity, -Infinity]}'))
    assert math.isnan(doc["a"][0]) and doc["a"][1:] == [math.inf, -math.inf]
    assert _tfjson.loads(memoryview(b'[NaN]'))[0] != 0


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": nan}', b'{"a": Nan}', b"\xff"])
def test_tfjson_loads_invalid(body: bytes) -> None:
    with pytest.raises(InvalidInputError, match="JSON Parse error"):
        _tfjson.loads(body)


def test_tfjson_loads_too_deep() -> None:
    with pytest.raises(InvalidInputError):
        _tfjson.loads(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_tfjson_float_tokens(dtype: type) -> None:
    arr = np.array([[0.5, np.nan], [np.inf, -np.inf], [2.0, -0.0]], dtype=dtype)
    out = _tfjson.dumps({"v": _tfjson.float_json(arr)})
    assert out.startswith(b'{"v":[[0.5,NaN],[Infinity,-Infinity],[2.0,')
    assert _tfjson.dumps(_tfjson.float_json(arr[0, 1])) == b"NaN"
    assert _tfjson.dumps(_tfjson.float_json(arr[1, 1])) == b"-Infinity"
    assert _tfjson.dumps(_tfjson.float_json(arr[0, 0])) == b"0.5"


def test_tfjson_finite_stays_ndarray() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)[:, ::2]  # not contiguous
    value = _tfjson.float_json(arr)
    assert isinstance(value, np.ndarray)
    assert _tfjson.dumps(value) == b"[[0.0,2.0],[3.0,5.0]]"


def test_tfjson_bytes_json() -> None:
    arr = np.empty(3, dtype=object)
    arr[:] = [b"abc", b"\xff\x00", "t\xe9xt"]
    assert _tfjson.bytes_json(arr, binary=False) == ["abc", {"b64": "/wA="}, "t\xe9xt"]
    assert _tfjson.bytes_json(arr.reshape(3, 1), binary=True) == [
        [{"b64": "YWJj"}], [{"b64": "/wA="}], [{"b64": "dMOpeHQ="}]]


def test_tfjson_binary_objects() -> None:
    assert _tfjson.is_binary_object({"b64": "aGk="})
    assert _tfjson.is_binary_object({"data": "aGk="})
    assert not _tfjson.is_binary_object({"data": "aGk="}, data_is_input=True)
    assert not _tfjson.is_binary_object({"b64": "aGk=", "x": 1})
    assert not _tfjson.is_binary_object({"b64": 1})
    assert _tfjson.decode_b64("x", {"b64": "aGk"}) == b"hi"
    with pytest.raises(InvalidInputError, match="'x'.*base64"):
        _tfjson.decode_b64("x", {"b64": "a$b"})


def test_tfserving_version_status_every_state() -> None:
    from pathlib import Path

    from fastserve.core.repository import ModelVersion, State
    from fastserve.frontends.tfserving import _version_status

    want = {State.LOADING: "LOADING", State.READY: "AVAILABLE", State.UNLOADING: "UNLOADING",
            State.FAILED: "END"}
    for state, name in want.items():
        version = ModelVersion("m", "7", Path("."), state=state,
                               error="boom" if state is State.FAILED else "")
        failed = state is State.FAILED
        assert _version_status(version) == {
            "version": "7", "state": name,
            "status": {"error_code": "UNKNOWN" if failed else "OK",
                       "error_message": "boom" if failed else ""}}


def test_tfjson_rows_and_columns_without_a_server() -> None:
    from fastserve.types import DataType, TensorSpec

    specs = _tf_inputs.InputSpecs((TensorSpec("a", DataType.INT32, (-1, 2)),
                                TensorSpec("s", DataType.BYTES, (-1,))), True)
    inputs = _tf_inputs.decode_rows([{"a": [1, 2], "s": "x"}, {"a": [3, 4], "s": {"b64": "eQ=="}}],
                                 specs)
    assert inputs["a"].dtype == np.int32 and inputs["a"].tolist() == [[1, 2], [3, 4]]
    assert inputs["s"].tolist() == [b"x", b"y"]
    inputs = _tf_inputs.decode_columns({"a": [[5, 6]], "s": ["p", "q", "r"]}, specs)
    assert inputs["a"].shape == (1, 2) and inputs["s"].shape == (3,)
    out = {"a": np.array([[1, 2], [3, 4]], dtype=np.int32), "s": inputs["s"][:2]}
    assert _tfjson.dumps(_tfjson.encode_rows(out, {})) == \
        b'[{"a":[1,2],"s":"p"},{"a":[3,4],"s":"q"}]'
    assert _tfjson.dumps(_tfjson.encode_columns({"x_bytes": inputs["s"][:1]}, {})) == \
        b'[{"b64":"cA=="}]'
    with pytest.raises(InvalidInputError, match="inconsistent batch size"):
        _tfjson.encode_rows({"a": np.zeros(2), "b": np.zeros(3)}, {})
    with pytest.raises(InvalidInputError, match="no shape"):
        _tfjson.encode_rows({"a": np.zeros(())}, {})


def test_tfjson_bf16_output_as_floats() -> None:
    from fastserve.core.tensors import float_to_bf16
    from fastserve.types import DataType, TensorSpec

    bits = float_to_bf16(np.array([1.5, -2.0, np.inf], dtype=np.float32))
    spec = {"y": TensorSpec("y", DataType.BF16, (-1,))}
    assert _tfjson.dumps(_tfjson.encode_columns({"y": bits}, spec)) == b"[1.5,-2.0,Infinity]"


def test_tfjson_examples_reshaped_like_tf_example() -> None:
    from fastserve.types import DataType, TensorSpec

    specs = _tf_inputs.InputSpecs((TensorSpec("x", DataType.FP32, (-1, 2, -1)),), True)
    inputs, rows = _tf_examples.decode_examples(
        {"examples": [{"x": [1, 2, 3, 4]}, {"x": [5, 6, 7, 8]}]}, "regress", specs)
    assert rows == 2 and inputs["x"].shape == (2, 2, 2)
    undeclared = _tf_inputs.InputSpecs((), False)
    inputs, rows = _tf_examples.decode_examples(
        {"context": {"c": 1.0}, "examples": [{"v": [1, 2]}, {"v": [3, 4]}]}, "classify",
        undeclared)
    assert inputs["c"].shape == (2,) and inputs["v"].shape == (2, 2)
