"""JSON values and wire buffers to numpy, and the checks against the model's specs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastserve.core.tensors import (
    MAX_JSON_DEPTH,
    array_from_buffer,
    array_from_json,
    bf16_to_float,
    bytes_array,
    check_shape,
    datatype_of,
    element_count,
    float_to_bf16,
)
from fastserve.errors import InvalidInputError
from fastserve.types import DataType, TensorSpec

D = DataType


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


# array_from_json: every datatype, nested and flat

NUMERIC = [
    (D.UINT8, [[0, 255], [7, 8]], np.uint8),
    (D.UINT16, [[0, 65535], [1, 2]], np.uint16),
    (D.UINT32, [[0, 2**32 - 1], [1, 2]], np.uint32),
    (D.UINT64, [[0, 2**64 - 1], [1, 2]], np.uint64),
    (D.INT8, [[-128, 127], [0, -1]], np.int8),
    (D.INT16, [[-(2**15), 2**15 - 1], [0, -1]], np.int16),
    (D.INT32, [[-(2**31), 2**31 - 1], [0, -1]], np.int32),
    (D.INT64, [[-(2**63), 2**63 - 1], [0, -1]], np.int64),
    (D.FP16, [[0.5, -2.0], [65504.0, 1e-3]], np.float16),
    (D.FP32, [[0.1, -2.5], [3.4e38, float("inf")]], np.float32),
    (D.FP64, [[0.1, -2.5], [1e308, float("-inf")]], np.float64),
    (D.BOOL, [[True, False], [False, True]], np.bool_),
]


@pytest.mark.parametrize(("datatype", "data", "dtype"), NUMERIC, ids=[c[0].wire for c in NUMERIC])
@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_every_datatype_nested_and_flat(datatype: DataType, data: list[list[Any]],
                                        dtype: Any, layout: str) -> None:
    sent = data if layout == "nested" else [v for row in data for v in row]
    arr = array_from_json("x", sent, datatype, (2, 2))
    assert arr.dtype == np.dtype(dtype)
    assert arr.shape == (2, 2)
    np.testing.assert_array_equal(arr, np.array(data, dtype=dtype))


def test_flat_data_reshaped_to_any_shape_with_the_same_count() -> None:
    arr = array_from_json("x", list(range(24)), D.INT32, (2, 3, 4))
    np.testing.assert_array_equal(arr, np.arange(24, dtype=np.int32).reshape(2, 3, 4))
    arr = array_from_json("x", [[1, 2, 3], [4, 5, 6]], D.INT32, (3, 2))
    np.testing.assert_array_equal(arr, [[1, 2], [3, 4], [5, 6]])


def test_scalar_and_zero_size() -> None:
    assert array_from_json("x", 2.5, D.FP32, ()).shape == ()
    empty = array_from_json("x", [], D.FP32, (0, 4))
    assert empty.shape == (0, 4) and empty.dtype == np.float32
    assert array_from_json("x", [], D.INT8, (0,)).dtype == np.int8
    assert array_from_json("x", [], D.BOOL, (0,)).dtype == np.bool_
    assert array_from_json("x", [], D.BYTES, (0,)).shape == (0,)


def test_fp16_out_of_range_is_infinity() -> None:
    arr = array_from_json("x", [1e6, -1e6, 1.0], D.FP16, (3,))
    assert arr.tolist() == [float("inf"), float("-inf"), 1.0]


def test_nan_and_infinity_survive() -> None:
    arr = array_from_json("x", [float("nan"), float("inf")], D.FP32, (2,))
    assert np.isnan(arr[0]) and np.isposinf(arr[1])


# BF16: uint16 bit patterns until the backend

def test_bf16_from_json_is_uint16_bits() -> None:
    values = [1.0, -2.0, 0.5, 3.0e38, 0.0]
    arr = array_from_json("x", [values[:2], values[2:4], [values[4], 1.0]], D.BF16, (3, 2))
    assert arr.dtype == np.uint16 and arr.shape == (3, 2)
    assert arr[0].tolist() == [0x3F80, 0xC000]  # 1.0 and -2.0 exactly
    np.testing.assert_allclose(bf16_to_float(arr).ravel()[:5], values, rtol=2 ** -8)


def test_bf16_round_trip_of_representable_values() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**16, size=4096, dtype=np.uint16)
    floats = bf16_to_float(bits)
    finite = np.isfinite(floats)
    np.testing.assert_array_equal(float_to_bf16(floats[finite]), bits[finite])


def test_bf16_rounds_to_nearest_even() -> None:
    one = np.float32(1.0).view(np.uint32)
    halfway_down = np.array([one + 0x8000], dtype=np.uint32).view(np.float32)  # tie, even
    halfway_up = np.array([one + 0x18000], dtype=np.uint32).view(np.float32)  # tie, odd
    above = np.array([one + 0x8001], dtype=np.uint32).view(np.float32)
    assert float_to_bf16(halfway_down)[0] == 0x3F80
    assert float_to_bf16(halfway_up)[0] == 0x3F82
    assert float_to_bf16(above)[0] == 0x3F81


def test_bf16_specials() -> None:
    bits = float_to_bf16([np.nan, np.inf, -np.inf, -0.0, 3.4e38])
    assert bits[0] == 0x7FC0
    assert bits[1] == 0x7F80 and bits[2] == 0xFF80 and bits[3] == 0x8000
    assert bits[4] == 0x7F80  # rounds past the largest finite BF16
    assert np.isnan(bf16_to_float(bits[:1]))[0]


# BYTES and BOOL

def test_bytes_strings_nested_and_flat() -> None:
    arr = array_from_json("x", [["a", "bé"], ["", "\u20ac"]], D.BYTES, (2, 2))
    assert arr.dtype == object and arr.shape == (2, 2)
    assert arr.tolist() == [[b"a", "bé".encode()], [b"", "\u20ac".encode()]]
    flat = array_from_json("x", ["a", "b", "c"], D.BYTES, (3, 1))
    assert flat.tolist() == [[b"a"], [b"b"], [b"c"]]


def test_bytes_array_never_splits_items() -> None:
    arr = bytes_array([b"ab", b"cd", b"ef", b"gh"], (2, 2))
    assert arr.dtype == object and arr[1, 0] == b"ef"
    same = bytes_array([b"xy", b"xy"], (2,))  # equal lengths: numpy would make a 2-D S array
    assert same.shape == (2,) and same[0] == b"xy"


@pytest.mark.parametrize("data", [[1, 2], ["a", 2], [None], [["a"], 3], [b"x"]])
def test_bytes_must_be_strings(data: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"input 'x': BYTES data must be JSON strings"):
        array_from_json("x", data, D.BYTES, (len(data),))


@pytest.mark.parametrize("data", [[1, 0], [0.0, 1.0], ["true"], [[True], [1]]])
def test_bool_must_be_true_false(data: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"input 'x'"):
        array_from_json("x", data, D.BOOL, (len(data),))


# Refusals

@pytest.mark.parametrize("datatype", [D.FP32, D.INT64, D.BOOL, D.BYTES, D.BF16])
def test_element_count_mismatch(datatype: DataType) -> None:
    value = {D.BOOL: True, D.BYTES: "s"}.get(datatype, 1)
    with pytest.raises(InvalidInputError,
                       match=r"input 'x': shape \[2, 3\] needs 6 elements, data has 5"):
        array_from_json("x", [value] * 5, datatype, (2, 3))


@pytest.mark.parametrize("datatype", [D.FP32, D.INT32, D.BOOL, D.BF16])
def test_ragged(datatype: DataType) -> None:
    value = True if datatype is D.BOOL else 1
    with pytest.raises(InvalidInputError, match=r"input 'x'"):
        array_from_json("x", [[value, value], [value]], datatype, (3,))


@pytest.mark.parametrize("datatype", [D.FP32, D.INT8, D.BOOL, D.BYTES, D.BF16])
def test_nesting_limit(datatype: DataType) -> None:
    leaf = {D.BOOL: True, D.BYTES: "s"}.get(datatype, 1)
    # numpy stops at 64 dimensions, so that is the deepest a tensor can really be
    assert array_from_json("x", nested(64, leaf), datatype, (1,) * 64).size == 1
    for depth in (MAX_JSON_DEPTH + 1, 5000):
        with pytest.raises(InvalidInputError,
                           match=r"^input 'x': data is nested deeper than 100$"):
            array_from_json("x", nested(depth, leaf), datatype, (1,))


def test_bytes_nested_up_to_the_limit() -> None:
    data = [["a"], nested(MAX_JSON_DEPTH - 1, "b")]  # depth 100 in the second item
    assert array_from_json("x", data, D.BYTES, (2,)).tolist() == [b"a", b"b"]


@pytest.mark.parametrize("datatype", [D.FP32, D.INT8, D.BOOL, D.BYTES])
def test_deep_nesting_behind_a_shallow_first_element(datatype: DataType) -> None:
    # Deep enough to blow Python's recursion limit if walked recursively without a bound.
    leaf = {D.BOOL: True, D.BYTES: "s"}.get(datatype, 1)
    with pytest.raises(InvalidInputError, match=r"input 'x'"):
        array_from_json("x", [[leaf], nested(1500, leaf)], datatype, (2,))
    with pytest.raises(InvalidInputError, match=r"input 'x'"):
        array_from_json("x", [[leaf], nested(MAX_JSON_DEPTH + 1, leaf)], datatype, (2,))


@pytest.mark.parametrize(("datatype", "value"), [
    (D.UINT8, 256), (D.UINT8, -1), (D.INT8, 128), (D.INT8, -129), (D.INT16, 2**15),
    (D.UINT16, 2**16), (D.INT32, 2**31), (D.UINT32, -5), (D.INT64, 2**63),
    (D.UINT64, 2**64), (D.UINT64, -1),
])
def test_ints_out_of_range(datatype: DataType, value: int) -> None:
    with pytest.raises(InvalidInputError, match=r"input 'x'"):
        array_from_json("x", [0, value], datatype, (2,))


@pytest.mark.parametrize("datatype", [D.UINT8, D.INT8, D.INT32, D.INT64, D.UINT64])
@pytest.mark.parametrize("data", [[1.0, 2.0], [1, 2.5], [float("nan")]])
def test_floats_into_int_types_refused(datatype: DataType, data: list[Any]) -> None:
    with pytest.raises(InvalidInputError, match=r"input 'x': expected integers"):
        array_from_json("x", data, datatype, (len(data),))


@pytest.mark.parametrize("datatype", [D.FP32, D.INT32, D.FP16, D.BF16, D.FP64, D.UINT64])
@pytest.mark.parametrize("data", [[{"a": 1}], [None], [1.0, None], ["1.5"], [[1], 2]])
def test_non_numeric_refused(datatype: DataType, data: list[Any]) -> None:
    with pytest.raises(InvalidInputError, match=r"input 'x'"):
        array_from_json("x", data, datatype, (len(data),))


@pytest.mark.parametrize("datatype", [D.UINT8, D.INT64, D.UINT64])
def test_empty_int_data(datatype: DataType) -> None:
    arr = array_from_json("x", [[], []], datatype, (2, 0))
    assert arr.shape == (2, 0) and arr.dtype == np.dtype(datatype.numpy)


@pytest.mark.parametrize("datatype", [D.FP32, D.FP64, D.BF16])
def test_huge_ints_into_float_types(datatype: DataType) -> None:
    arr = array_from_json("x", [2**70, 1.5, -(2**80)], datatype, (3,))
    got = bf16_to_float(arr) if datatype is D.BF16 else arr
    np.testing.assert_allclose(got, [2.0**70, 1.5, -(2.0**80)], rtol=1e-2)


def test_uint64_mixed_with_small_values() -> None:
    # numpy reads [0, 2**64 - 1] as float64; the full uint64 range must still come through
    arr = array_from_json("x", [[0, 2**64 - 1], [2**63, 1]], D.UINT64, (2, 2))
    assert arr.dtype == np.uint64 and arr.tolist() == [[0, 2**64 - 1], [2**63, 1]]


# check_shape and element_count

def test_check_shape() -> None:
    assert check_shape("x", [2, 0, 3]) == (2, 0, 3)
    assert check_shape("x", []) == ()
    for bad in ([-1], [1.0], [True], "2,3", None, (2, 3)):
        with pytest.raises(InvalidInputError, match=r"input 'x': shape must be a list"):
            check_shape("x", bad)
    assert element_count((2, 3, 4)) == 24 and element_count(()) == 1


# array_from_buffer

@pytest.mark.parametrize("datatype", [dt for dt in DataType if dt is not D.BYTES],
                         ids=lambda dt: dt.wire)
def test_array_from_buffer_every_datatype(datatype: DataType) -> None:
    rng = np.random.default_rng(1)
    dtype = np.bool_ if datatype is D.BOOL else np.dtype(datatype.numpy)
    values = rng.integers(0, 2, size=(2, 3)).astype(dtype)
    body = bytearray(values.tobytes())
    arr = array_from_buffer("x", memoryview(body), datatype, (2, 3))
    assert arr.dtype == dtype and arr.shape == (2, 3)
    np.testing.assert_array_equal(arr, values)


def test_array_from_buffer_is_zero_copy() -> None:
    body = bytearray(np.arange(6, dtype="<f4").tobytes()) + b"tail"
    view = memoryview(body)[:24]
    arr = array_from_buffer("x", view, D.FP32, (2, 3))
    assert np.shares_memory(arr, np.frombuffer(body, dtype=np.uint8))
    body[0:4] = np.float32(42.0).tobytes()
    assert arr[0, 0] == 42.0


def test_array_from_buffer_read_only_body() -> None:
    arr = array_from_buffer("x", memoryview(b"\x01\x00\x02\x00"), D.INT16, (2,))
    assert arr.tolist() == [1, 2] and not arr.flags.writeable


@pytest.mark.parametrize(("nbytes", "datatype", "shape"), [
    (23, D.FP32, (2, 3)), (25, D.FP32, (2, 3)), (0, D.INT64, (1,)), (8, D.INT64, (0,)),
    (3, D.FP16, (2,)), (4, D.BOOL, (3,)),
])
def test_array_from_buffer_size_mismatch(nbytes: int, datatype: DataType,
                                         shape: tuple[int, ...]) -> None:
    need = int(np.prod(shape)) * datatype.itemsize
    with pytest.raises(InvalidInputError,
                       match=rf"input 'x': binary_data_size is {nbytes} bytes but shape "
                             rf"\[.*\] of {datatype.wire} needs {need}"):
        array_from_buffer("x", memoryview(bytes(nbytes)), datatype, shape)


def test_array_from_buffer_zero_size() -> None:
    arr = array_from_buffer("x", memoryview(b""), D.FP32, (0, 4))
    assert arr.shape == (0, 4)


# datatype_of

def test_datatype_of() -> None:
    for dt in DataType:
        if dt in (D.BYTES, D.BF16):
            continue
        dtype = np.bool_ if dt is D.BOOL else np.dtype(dt.numpy)
        assert datatype_of(np.zeros(1, dtype=dtype)) is dt
    assert datatype_of(bytes_array([b"a"], (1,))) is D.BYTES
    bf16 = TensorSpec("y", D.BF16, (-1,))
    assert datatype_of(np.zeros(1, np.uint16), bf16) is D.BF16
    assert datatype_of(np.zeros(1, np.uint16)) is D.UINT16
    assert datatype_of(np.zeros(1, np.float32), bf16) is D.FP32


@pytest.mark.parametrize(("data", "where"), [
    ([[1, 2], [3]], "the lists at depth 2 have lengths [1, 2]"),
    ([[1, 2], 3, 4], "lists and single values mix at depth 2"),
    ([[[1], [2, 3]], [[4], [5]]], "the lists at depth 3 have lengths [1, 2]"),
])
def test_ragged_says_which_input_and_where(data: Any, where: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        array_from_json("pixels", data, D.FP32, (2, 2))
    assert info.value.message.startswith(f"input 'pixels': the data is ragged ({where})")
