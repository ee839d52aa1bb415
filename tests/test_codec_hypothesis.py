"""Property tests of the codec: round trips of every v2 datatype, Py <-> C, fuzzing."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastserve.errors import CodecError
from fastserve.types import DataType

import codec_fixtures
from codec_fixtures import CODEC_C, CODEC_PY

# On the suite's own profile (tests/conftest.py: no deadline, never too_slow).
settings.register_profile("ci", parent=settings.get_profile("fastserve"), max_examples=50)
if os.environ.get("CI"):
    settings.load_profile("ci")

codec_impl = codec_fixtures.codec_impl
# codec_impl only picks a module: sharing it across examples is safe.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
needs_c = pytest.mark.skipif(CODEC_C is None, reason="fastserve._codec is not built")

FIXED = [dt for dt in DataType if dt is not DataType.BYTES]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)  # <= 64 elements
ELEMENT = st.one_of(st.binary(max_size=40), st.text(max_size=20))


def as_bytes(item: bytes | str) -> bytes:
    return item.encode() if isinstance(item, str) else item


@st.composite
def tensors(draw):
    """(name, datatype, array) of a fixed-size v2 datatype, or (name, BYTES, list, shape)."""
    dt = draw(st.sampled_from(list(DataType)))
    shape = draw(SHAPES)
    if dt is DataType.BYTES:
        items = draw(st.lists(ELEMENT, min_size=math.prod(shape), max_size=math.prod(shape)))
        return dt, items, shape
    return dt, draw(hnp.arrays(np.dtype(dt.numpy), shape)), shape


@fixture_ok
@given(st.lists(tensors(), max_size=4), st.sampled_from([bytes, bytearray, memoryview]))
def test_body_round_trip(codec_impl, specs, make):
    """Tensors -> one body -> split_binary_inputs -> np.frombuffer / decode: equal."""
    parts, sizes = [], []
    for i, (dt, value, _) in enumerate(specs):
        raw = codec_impl.encode_bytes_tensor(value) if dt is DataType.BYTES else value.tobytes()
        if dt is DataType.BYTES:
            assert codec_impl.bytes_tensor_size(value) == len(raw)
        else:
            assert len(raw) == math.prod(value.shape) * dt.itemsize
        parts.append(raw)
        sizes.append((f"input{i}", len(raw)))
    views = codec_impl.split_binary_inputs(make(b"".join(parts)), sizes)
    assert len(views) == len(specs)
    for (dt, value, shape), view in zip(specs, views, strict=True):
        if dt is DataType.BYTES:
            decoded = codec_impl.decode_bytes_tensor(view, "x", math.prod(shape))
            assert decoded == [as_bytes(x) for x in value]
        else:
            got = np.frombuffer(view, dtype=dt.numpy).reshape(shape)
            assert got.dtype == value.dtype and got.tobytes() == value.tobytes()
            assert np.array_equal(got, value, equal_nan=got.dtype.kind == "f")


@pytest.mark.parametrize("dt", FIXED, ids=[dt.wire for dt in FIXED])
@fixture_ok
@given(data=st.data())
def test_every_fixed_datatype(codec_impl, dt, data):
    value = data.draw(hnp.arrays(np.dtype(dt.numpy), SHAPES))
    (view,) = codec_impl.split_binary_inputs(value.tobytes(), [("x", value.nbytes)])
    assert np.frombuffer(view, dtype=dt.numpy).reshape(value.shape).tobytes() == value.tobytes()


@needs_c
@given(st.lists(ELEMENT, max_size=30))
def test_bytes_c_encode_py_decode(items):
    body = CODEC_C.encode_bytes_tensor(items)
    assert body == CODEC_PY.encode_bytes_tensor(items)
    assert CODEC_C.bytes_tensor_size(items) == CODEC_PY.bytes_tensor_size(items) == len(body)
    assert CODEC_PY.decode_bytes_tensor(body, "x", len(items)) == [as_bytes(x) for x in items]


@needs_c
@given(st.lists(ELEMENT, max_size=30))
def test_bytes_py_encode_c_decode(items):
    body = CODEC_PY.encode_bytes_tensor(items)
    assert CODEC_C.decode_bytes_tensor(body, "x", len(items)) == [as_bytes(x) for x in items]


def outcome(fn, *args):
    """fn's result, or its CodecError message; any other exception fails the test."""
    try:
        result = fn(*args)
    except CodecError as exc:
        return "error", str(exc)
    return "ok", [bytes(x) for x in result]


# Bodies that are nearly valid, to reach deep into the decoder, and plain noise.
NEAR_VALID = st.builds(
    lambda items, cut, noise: CODEC_PY.encode_bytes_tensor(items)[:cut] + noise,
    st.lists(st.binary(max_size=8), max_size=6),
    st.integers(0, 80),
    st.binary(max_size=6),
)
BODIES = st.one_of(st.binary(max_size=64), NEAR_VALID)


@fixture_ok
@given(BODIES, st.integers(-1, 8))
def test_fuzz_decode(codec_impl, body, count):
    kind, value = outcome(codec_impl.decode_bytes_tensor, body, "x", count)
    if kind == "ok":
        assert codec_impl.encode_bytes_tensor(value) == body
    if CODEC_C is not None:
        assert outcome(CODEC_C.decode_bytes_tensor, body, "x", count) == (kind, value)
        assert outcome(CODEC_PY.decode_bytes_tensor, body, "x", count) == (kind, value)


SIZES = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.one_of(st.integers(-3, 40), st.integers(), st.just(True), st.just("4")),
    ),
    max_size=5,
)


@fixture_ok
@given(st.binary(max_size=64), SIZES)
def test_fuzz_split(codec_impl, tail, sizes):
    kind, value = outcome(codec_impl.split_binary_inputs, tail, sizes)
    if kind == "ok":
        assert b"".join(value) == tail
    if CODEC_C is not None:
        assert outcome(CODEC_C.split_binary_inputs, tail, sizes) == (kind, value)
        assert outcome(CODEC_PY.split_binary_inputs, tail, sizes) == (kind, value)
