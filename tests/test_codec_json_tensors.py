"""codec.split_json_tensors: v2 JSON number arrays parsed in C straight from the body.

The reference is the general path (the twin has no fast path): orjson on the whole body,
then tensors.array_from_json. For any body, valid or not, the C path must give the very
same arrays (dtype, shape, bits) or the very same error message, and never read outside
the body (hostile, truncated, deep and oversized inputs; hypothesis and random bytes).

Under AddressSanitizer and UBSan (how the C path was checked; not part of CI):
    CFLAGS="-fsanitize=address,undefined -O1 -g" LDFLAGS="-fsanitize=address,undefined" \
        python setup.py build_ext --inplace
    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
        ASAN_OPTIONS=detect_leaks=0 python -m pytest tests/test_codec_json_tensors.py
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastserve.core import tensors
from fastserve.errors import InvalidInputError
from fastserve.types import DataType

from codec_fixtures import CODEC_C, CODEC_PY

needs_c = pytest.mark.skipif(CODEC_C is None, reason="fastserve._codec is not built")
DATATYPES = [DataType.FP32, DataType.FP64, DataType.INT32, DataType.INT64, DataType.FP16,
             DataType.BOOL, DataType.UINT8]


def load(body: Any) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from None


def decode(body: bytes, datatype: DataType, fast: bool, counts: list[int]) -> Any:
    """Every input's array (or the error) as the v2 front-end would make it."""
    try:
        doc = tensors.load_tensor_json(body, load) if fast else load(body)
        return [tensors.array_from_json("x", item["data"], datatype, (count,))
                for item, count in zip(doc["inputs"], counts, strict=False)]
    except (InvalidInputError, KeyError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _counts(body: bytes) -> list[int]:
    """Each input's leaf count by the general path, so both paths get the same shapes."""
    try:
        return [_count(item["data"]) for item in orjson.loads(body)["inputs"]]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return []


def _count(data: Any) -> int:
    try:
        return max(int(np.asarray(data, dtype=object).size), 1)
    except (ValueError, RecursionError):
        return 1


def same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b, strict=True))


def check(body: bytes, datatypes: list[DataType] = DATATYPES) -> None:
    counts = _counts(body)
    for dt in datatypes:
        fast, slow = decode(body, dt, True, counts), decode(body, dt, False, counts)
        assert same(fast, slow), (body[:200], dt, fast, slow)


def v2(*datas: Any, raw: str | None = None) -> bytes:
    inputs = [{"name": f"i{k}", "shape": [1], "datatype": "FP32", "data": d}
              for k, d in enumerate(datas)]
    if raw is not None:
        return raw.encode()
    return json.dumps({"id": "r", "inputs": inputs, "outputs": [{"name": "o"}]}).encode()


def test_twin_has_no_fast_path():
    assert CODEC_PY.split_json_tensors(v2([1.0, 2.0])) is None


@needs_c
def test_cut_arrays_and_skeleton():
    body = b'{"inputs": [{"name": "a", "data": [[1, 2.5], [3, 4]]}, {"data": ["s"]}], "x": 1}'
    skeleton, found = CODEC_C.split_json_tensors(body)
    assert orjson.loads(skeleton) == {"inputs": [{"name": "a", "data": None}, {"data": ["s"]}],
                                      "x": 1}
    [(index, nums)] = found
    assert (index, nums.count, nums.shape) == (0, 4, (2, 2))
    assert bytes(nums.text()) == b"[[1, 2.5], [3, 4]]"
    assert nums.to_array(np.dtype(np.float32), 5) is None  # count must agree
    assert nums.to_array(np.dtype(np.int32), 4) is None  # 2.5: the general path refuses it
    np.testing.assert_array_equal(nums.to_array(np.dtype(np.float32), 4), [1, 2.5, 3, 4])
    assert nums.to_array(np.dtype(np.float32), 4) is None  # converted once; buffer reused
    _, [(_, nums)] = CODEC_C.split_json_tensors(body)
    assert nums.to_array(np.dtype(np.float64), 4).dtype == np.float64  # handed over, no copy
    assert nums.to_array(np.dtype(np.float64), 4) is None
    assert bytes(nums.text()) == b"[[1, 2.5], [3, 4]]"  # the general path can still read it


@needs_c
def test_values_buffer_is_reused_not_grown():
    body = v2(list(range(1000)))
    first = CODEC_C.split_json_tensors(body)[1][0][1]
    first.to_array(np.dtype(np.float32), 1000)
    del first
    for _ in range(3):  # the spare buffer is taken, filled, converted and given back
        nums = CODEC_C.split_json_tensors(body)[1][0][1]
        np.testing.assert_array_equal(nums.to_array(np.dtype(np.int32), 1000), range(1000))


@needs_c
@pytest.mark.parametrize("body", [
    b"", b"[]", b"{}", b'{"inputs": 1}', b'{"inputs": []}', b'{"inputs": [1, "a"]}',
    b'{"inputs": [{"data": []}]}', b'{"inputs": [{"data": [[1], [2, 3]]}]}',  # ragged
    b'{"inputs": [{"data": [[1], 2]}]}', b'{"inputs": [{"data": [1, [2]]}]}',
    b'{"inputs": [{"data": [NaN]}]}', b'{"inputs": [{"data": [Infinity, 1]}]}',
    b'{"inputs": [{"data": [01]}]}', b'{"inputs": [{"data": [1.]}]}',
    b'{"inputs": [{"data": [.5]}]}', b'{"inputs": [{"data": [+1]}]}',
    b'{"inputs": [{"data": [1,]}]}', b'{"inputs": [{"data": [1 2]}]}',
    b'{"inputs": [{"data": [1e]}]}', b'{"inputs": [{"data": [1e400]}]}',
    b'{"inputs": [{"data": [1], "data": [2]}]}', b'{"inputs": [], "inputs": [{"data": [1]}]}',
    b'{"inputs": [{"d\\u0061ta": [1], "data": [2]}]}', b'{"inp\\u0075ts": [{"data": [1]}]}',
    b'{"inputs": [{"data": [1]}]} x', b'{"inputs": [{"data": [1]}]', b'{"inputs": [{"data": [1',
    b'{"inputs": [{"data": [true, 1]}]}', b'{"inputs": [{"data": [null]}]}',
])
def test_unusual_bodies_are_left_to_the_general_path(body):
    result = CODEC_C.split_json_tensors(body)
    if result is not None:  # only the arrays that are plain are cut; the rest is intact
        skeleton, found = result
        assert all(orjson.loads(n.text()) for _, n in found)
    check(body)


@needs_c
@pytest.mark.parametrize("token", [
    "0", "-0", "0.0", "-0.0", "1", "-1", "1.5", "0.1", "1e22", "1e23", "1E+2", "1e-2",
    "2.5e-5", "9007199254740992", "9007199254740993", "-9007199254740993",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808",
    "18446744073709551615", "18446744073709551616", "12345678901234567890123",
    "0.13965606689453125", "0.0049266815185546875", "1.7976931348623157e308",
    "2.2250738585072014e-308", "5e-324", "4.9406564584124654e-324", "1e-400", "1e308",
    "3.4028235677973366e38", "3.4028235677973367e38", "1e39", "-1e39", "0.000000000000000000001",
    "123456789012345678901234567890.123456789", "0." + "0" * 400 + "1", "1" + "0" * 400,
    "1e" + "9" * 30, "1e-" + "9" * 30, "0e999999",
])
def test_number_tokens(token):
    check(f'{{"inputs": [{{"data": [{token}, 1]}}]}}'.encode())
    check(f'{{"inputs": [{{"data": [[{token}]]}}]}}'.encode())


@needs_c
def test_float32_values_as_python_writes_them():
    rng = np.random.default_rng(0)
    values = [float(v) for v in rng.random(3000, dtype=np.float32)]
    values += [float(v) for v in rng.standard_normal(3000)]
    values += [struct.unpack("d", struct.pack("Q", int(b)))[0]
               for b in rng.integers(0, 2**63, 3000, dtype=np.uint64)]
    values = [v for v in values if math.isfinite(v)]
    body = orjson.dumps({"inputs": [{"data": values}]})
    assert CODEC_C.split_json_tensors(body) is not None
    check(body, [DataType.FP32, DataType.FP64])


@needs_c
def test_deep_and_long_inputs_stay_in_bounds():
    check(b'{"inputs": [{"data": ' + b"[" * 100_000 + b"1" + b"]" * 100_000 + b"}]}")
    check(b'{"inputs": [{"data": ' + b"[" * 32 + b"1" + b"]" * 32 + b"}]}")
    check(b'{"inputs": [{"data": ' + b"[" * 33 + b"1" + b"]" * 33 + b"}]}")
    check(b'{"inputs": [{"data": [' + b"7" * 1_000_000 + b"]}]}")
    check(b'{"inputs": [{"data": [0.' + b"1" * 1_000_000 + b"]}]}")
    check(b'{"inputs": [{"data": [' + b"1," * 200_000 + b"1]}]}")
    check(b'{"inputs": [' + b'{"data": [1]},' * 1000 + b"{}]}")


@needs_c
def test_every_truncation_and_random_damage():
    body = v2([[1.5, -2, 3e-3], [4, 5, 6]], [1, 2, 3], ["s"], [[0.25]])
    for n in range(len(body) + 1):
        check(body[:n], [DataType.FP32, DataType.INT64])
    rnd = random.Random(0)
    for _ in range(3000):
        damaged = bytearray(body)
        for _ in range(rnd.randint(1, 4)):
            damaged[rnd.randrange(len(damaged))] = rnd.choice(b'[]{},:"\\ -.0123456789eE\x00\xff')
        check(bytes(damaged), [DataType.FP32, DataType.INT32])


@needs_c
def test_buffers_of_any_kind():
    body = v2([1.0, 2.0])
    for buf in (body, bytearray(body), memoryview(body), memoryview(b"xx" + body)[2:]):
        skeleton, [(_, nums)] = CODEC_C.split_json_tensors(buf)
        np.testing.assert_array_equal(nums.to_array(np.dtype(np.float32), 2), [1.0, 2.0])


numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
leaves = st.one_of(numbers, numbers, st.booleans(), st.none(), st.text(max_size=3))
values = st.recursive(leaves, lambda inner: st.lists(inner, min_size=0, max_size=4),
                      max_leaves=30)


@needs_c
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datas=st.lists(values, min_size=1, max_size=3), indent=st.booleans())
def test_hypothesis_documents(datas, indent):
    doc = {"inputs": [{"name": "x", "data": d} for d in datas], "id": "1"}
    body = json.dumps(doc, indent=1 if indent else None).encode()
    check(body, [DataType.FP32, DataType.FP64, DataType.INT32, DataType.INT64])


def _nest(shape: tuple[int, ...], leaf: Any) -> Any:
    return [_nest(shape[1:], leaf) for _ in range(shape[0])] if shape else leaf


@needs_c
@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple),
       leaf=numbers, pos=st.integers(0, 10_000), junk=st.binary(max_size=6))
def test_hypothesis_regular_nests_and_spliced_junk(shape, leaf, pos, junk):
    body = v2(_nest(shape, leaf))
    check(body)
    at = pos % (len(body) + 1)
    check(body[:at] + junk + body[at:], [DataType.FP32, DataType.INT64])


@needs_c
def test_no_made_up_instances():
    """Only split_json_tensors fills one: not pickle, and an empty one converts nothing."""
    import pickle

    _, [(_, nums)] = CODEC_C.split_json_tensors(v2([1.0]))
    with pytest.raises(TypeError):
        pickle.dumps(nums)
    empty = CODEC_C.JsonNumbers()
    assert empty.count == 0 and empty.to_array(np.dtype(np.float32), 0) is None
