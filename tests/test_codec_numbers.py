"""codec.numbers_from_json: the C fast path for plain JSON numbers gives exactly what the
general path (tensors.array_from_json) gives, or None so that path decides."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastserve.core import tensors
from fastserve.core.tensors import array_from_json
from fastserve.types import DataType

import codec_fixtures
from codec_fixtures import CODEC_PY

codec_impl = codec_fixtures.codec_impl

PLAIN = {DataType.FP32: np.float32, DataType.FP64: np.float64, DataType.INT32: np.int32,
         DataType.INT64: np.int64}


def general(monkeypatch: pytest.MonkeyPatch, data: Any, datatype: DataType,
            shape: tuple[int, ...]) -> Any:
    """array_from_json without the C fast path."""
    with monkeypatch.context() as m:
        m.setattr(tensors.codec, "numbers_from_json", CODEC_PY.numbers_from_json)
        return array_from_json("x", data, datatype, shape)


def nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0]
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def test_twin_has_no_fast_path():
    assert CODEC_PY.numbers_from_json([1.0, 2.0], np.dtype(np.float32), 2) is None


@pytest.mark.parametrize("datatype", list(PLAIN), ids=lambda d: d.wire)
@pytest.mark.parametrize("data, shape", [
    ([0.0, -0.0, 1.5, -2.25], (4,)),
    ([[1, 2, 3], [4, 5, 6]], (2, 3)),
    ([[1, 2, 3], [4, 5, 6]], (3, 2)),  # only the count must agree
    ([[[7]]], (1,)),
    ([1, 2.5, -3, 4], (2, 2)),
])
def test_plain_numbers_match_the_general_path(codec_impl, monkeypatch, datatype, data, shape):
    dtype = np.dtype(PLAIN[datatype])
    want: Any
    try:
        want = general(monkeypatch, data, datatype, shape)
    except Exception as exc:  # e.g. floats for an integer input: refused there
        want = exc
    got = codec_impl.numbers_from_json(data, dtype, int(np.prod(shape)))
    if got is None:
        return  # the general path decides: nothing to compare
    assert not isinstance(want, Exception), f"fast path accepted what is refused: {want}"
    assert got.dtype == dtype and got.shape == (int(np.prod(shape)),)
    np.testing.assert_array_equal(got.reshape(shape), want)


def test_fast_path_is_taken_for_the_plain_case():
    if codec_fixtures.CODEC_C is None:
        pytest.skip("fastserve._codec is not built")
    c = codec_fixtures.CODEC_C
    got = c.numbers_from_json([[0.5, 1], [2, 3]], np.dtype(np.float32), 4)
    assert got is not None and got.tolist() == [0.5, 1.0, 2.0, 3.0]
    assert c.numbers_from_json([2**62, -5], np.dtype(np.int64), 2).tolist() == [2**62, -5]


FLOAT_EDGES = [1e300, -1e300, 3.4028235e38, 3.4028236e38, 1e-50, float("inf"),
               float("-inf"), 2.0**-149, 16777217.0]


def test_float32_rounding_and_overflow_as_numpy(codec_impl, monkeypatch):
    got = codec_impl.numbers_from_json(FLOAT_EDGES, np.dtype(np.float32), len(FLOAT_EDGES))
    with np.errstate(over="ignore"):
        want = np.array(FLOAT_EDGES, dtype=np.float64).astype(np.float32)
    if got is not None:
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(general(monkeypatch, FLOAT_EDGES, DataType.FP32, (9,)), want)
    nan = codec_impl.numbers_from_json([float("nan")], np.dtype(np.float32), 1)
    assert nan is None or np.isnan(nan[0])


@pytest.mark.parametrize("data, dtype, count", [
    ([[1.0, 2.0], [3.0]], np.float32, 3),  # ragged
    ([1.0, True], np.float32, 2),  # bool is no number here
    ([1.0, None], np.float64, 2),
    (["1.5"], np.float32, 1),
    ([1.5], np.int64, 1),  # floats for integers: refused by the general path
    ([2**31], np.int32, 1),
    ([2**63], np.int64, 1),
    ([2**53 + 1], np.float32, 1),  # would round twice through double
    ([1.0, 2.0], np.float32, 3),  # count mismatch
    ([], np.float32, 0),
    ([[]], np.float32, 0),
    (1.0, np.float32, 1),  # not a list
    ((1.0, 2.0), np.float32, 2),
    ([1, 2], np.int8, 2),  # not a fast dtype
    ([1.0, 2.0], np.float16, 2),
    ([[1.0, [2.0]], [3.0, 4.0]], np.float32, 4),  # a list where a number belongs
    ([[1.0, 2.0], 3.0], np.float32, 3),
])
def test_anything_not_plain_is_left_to_the_general_path(codec_impl, data, dtype, count):
    assert codec_impl.numbers_from_json(data, np.dtype(dtype), count) is None


def test_depth_limit(codec_impl):
    deep: Any = 1.0
    for _ in range(32):
        deep = [deep]
    got = codec_impl.numbers_from_json(deep, np.dtype(np.float32), 1)
    assert got is None or got.tolist() == [1.0]
    assert codec_impl.numbers_from_json([deep], np.dtype(np.float32), 1) is None  # 33 deep


def test_first_element_chain_longer_than_count_is_refused_before_writing(codec_impl):
    """dims along the first elements multiply past 2**64 (8**22 wraps to 4 in C): were the
    product allowed to wrap, count=4 would match and 8 leaves be written into 4 slots."""
    chain: Any = [1.0] * 8
    for _ in range(21):
        chain = [chain] + [0.0] * 7
    assert codec_impl.numbers_from_json(chain, np.dtype(np.float32), 4) is None
    assert codec_impl.numbers_from_json(chain, np.dtype(np.float32), 8**22 % 2**64) is None


@pytest.mark.parametrize("count", [2**63, 2**70, -1, 0, 2.0, True])
def test_count_out_of_range_or_not_an_int_is_no_error(codec_impl, count):
    # a client's shape: [2**70] must reach the general path's count error, not a C overflow
    assert codec_impl.numbers_from_json([1.0, 2.0], np.dtype(np.float32), count) is None


def test_huge_shape_gets_the_count_error():
    from fastserve.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"needs 1180591620717411303424 elements"):
        array_from_json("x", [1.0, 2.0], DataType.FP32, (2**70,))


numbers = st.one_of(st.floats(width=64), st.integers(-(2**70), 2**70), st.booleans(),
                    st.none())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_data_agrees_with_the_general_path(data):
    datatype = data.draw(st.sampled_from(list(PLAIN)))
    shape = tuple(data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
    count = int(np.prod(shape))
    leaves = data.draw(st.lists(numbers, min_size=count, max_size=count))
    sent = nest(leaves, shape)
    impls = [m for m in (codec_fixtures.CODEC_C, CODEC_PY) if m is not None]
    with pytest.MonkeyPatch.context() as mp:
        try:
            want = general(mp, sent, datatype, shape)
        except Exception:
            want = None
    for impl in impls:
        got = impl.numbers_from_json(sent, np.dtype(PLAIN[datatype]), count)
        if got is None:
            continue
        assert want is not None, f"fast path accepted {sent!r} which is refused"
        np.testing.assert_array_equal(got.reshape(shape), want)
