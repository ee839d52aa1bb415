"""Tensors at the edge: JSON values and wire buffers to numpy arrays.

Every API decodes into the same numpy arrays (BYTES: object arrays of ``bytes``;
BF16: uint16 bit patterns); core.validation checks them against the model once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from .. import codec
from ..errors import InvalidInputError
from ..types import DataType, TensorSpec

MAX_JSON_DEPTH = 100
NUMPY_MAX_DEPTH = 32

# Datatypes the C codec fills from plain JSON numbers (codec.numbers_from_json).
_PLAIN = {dt: np.dtype(dt.numpy) for dt in (DataType.FP32, DataType.FP64, DataType.INT32,
                                             DataType.INT64)}

_BY_NUMPY = {np.dtype(dt.numpy): dt for dt in DataType
             if dt not in (DataType.BF16, DataType.BYTES)}
_BY_NUMPY[np.dtype(object)] = DataType.BYTES


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def check_shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInputError(
            f"input '{name}': shape must be a list of non-negative integers, got {shape!r}")
    return tuple(shape)


def bytes_array(items: Sequence[bytes], shape: tuple[int, ...]) -> np.ndarray:
    """An object array of bytes (built by assignment so numpy never splits the items)."""
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def _depth(data: Any) -> int:
    depth = 0
    while isinstance(data, list):
        depth += 1
        if depth > MAX_JSON_DEPTH:
            break
        data = data[0] if data else None
    return depth


def float_to_bf16(values: Any) -> np.ndarray:
    """float32 values to bfloat16 bit patterns (uint16), rounding to nearest even."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + (((bits >> 16) & 1) + 0x7FFF)
    out = (rounded >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    if nan.any():
        out[nan] = 0x7FC0
    return out


def bf16_to_float(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def load_tensor_json(body: Any, load: Callable[[Any], Any]) -> Any:
    """A v2 request document as ``load`` (orjson) gives it, except that each plain number
    array under inputs[i].data is parsed in C straight from the body (a JsonNumbers, which
    array_from_json takes). ``load`` parses anything else, and gives every error message."""
    split = codec.split_json_tensors(body)
    if split is None:
        return load(body)
    skeleton, found = split
    try:
        doc = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        return load(body)  # the message names a place in the body, not in the skeleton
    inputs = doc["inputs"]
    for index, numbers in found:
        inputs[index]["data"] = numbers
    return doc


def array_from_json(name: str, data: Any, datatype: DataType, shape: tuple[int, ...]) -> Any:
    """JSON ``data`` (nested or flat) to an array of ``shape``; only the count must agree."""
    expected = element_count(shape)
    plain = _PLAIN.get(datatype)
    if type(data) is codec.JsonNumbers:
        arr = data.to_array(plain, expected) if plain is not None else None
        if arr is not None:
            return arr.reshape(shape)
        data = orjson.loads(data.text())  # the general path, on what orjson gives
    if plain is not None and type(data) is list:
        # Plain numbers go straight into a typed buffer (C codec); None: the general path.
        arr = codec.numbers_from_json(data, plain, expected)
        if arr is not None:
            return arr.reshape(shape)
    depth = _depth(data)
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(f"input '{name}': data is nested deeper than {MAX_JSON_DEPTH}")
    if depth > NUMPY_MAX_DEPTH:
        # numpy stops at 64 dimensions; only the element count matters, so go flat.
        data = _flatten(data)
    try:
        if datatype is DataType.BYTES:
            try:
                flat = _flatten(data)
            except InvalidInputError as exc:
                raise InvalidInputError(f"input '{name}': {exc.message}") from None
            if not all(isinstance(s, str) for s in flat):
                raise InvalidInputError(f"input '{name}': BYTES data must be JSON strings")
            if len(flat) != expected:
                raise _count_error(name, shape, expected, len(flat))
            return bytes_array([s.encode("utf-8") for s in flat], shape)
        if datatype is DataType.BF16:
            arr = float_to_bf16(_numeric(name, data, np.dtype(np.float32)))
        elif datatype is DataType.BOOL:
            arr = np.asarray(data)
            if arr.size and arr.dtype != np.bool_:
                raise InvalidInputError(f"input '{name}': BOOL data must be true/false")
            arr = arr.astype(np.bool_, copy=False)
        else:
            arr = _numeric(name, data, np.dtype(datatype.numpy))
    except (ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        where = _ragged_at(data)
        if where is not None:
            raise InvalidInputError(
                f"input '{name}': the data is ragged ({where}); send a flat list, or nested "
                "lists that are all the same length at each level") from None
        raise InvalidInputError(
            f"input '{name}': data is not a valid {datatype.wire} tensor: {exc}") from None
    if arr.size != expected:
        raise _count_error(name, shape, expected, arr.size)
    return arr.reshape(shape)


def _ragged_at(data: Any) -> str | None:
    """Where nested JSON lists stop being rectangular, or None (an error path only).

    Level by level, not recursively: the data may be nested thousands deep."""
    level = data if isinstance(data, list) else []
    depth = 2  # the top list is depth 1; its items are at depth 2
    while level and depth <= MAX_JSON_DEPTH:
        nested = [isinstance(item, list) for item in level]
        if not any(nested):
            return None
        if not all(nested):
            return f"lists and single values mix at depth {depth}"
        lengths = {len(item) for item in level}
        if len(lengths) > 1:
            return f"the lists at depth {depth} have lengths {sorted(lengths)}"
        level = [x for item in level for x in item]
        depth += 1
    return None


def _numeric(name: str, data: Any, dtype: np.dtype) -> np.ndarray:
    raw = np.asarray(data)
    kind = raw.dtype.kind if raw.size else dtype.kind
    if dtype.kind == "f":
        # Numbers only: numpy would read null as NaN and "1.5" as 1.5.
        if kind == "O" and _all_of(data, (int, float)):
            kind = "f"  # ints past int64/uint64 (object array): plain numbers all the same
        if kind not in "fiub":
            raise InvalidInputError(
                f"input '{name}': expected numbers for {dtype}, got {_kinds(raw)}")
        if raw.dtype == dtype:
            return raw
        # Out of range for FP16/FP32 becomes ±inf (IEEE), without a RuntimeWarning per request.
        with np.errstate(over="ignore"):
            return raw.astype(dtype, copy=False)
    if kind in "fO" and _all_of(data, (int,)):
        # Python ints that share no numpy type (0 and 2**64 - 1 become float64): convert
        # straight to the target, which refuses what it cannot hold.
        try:
            return np.asarray(data, dtype=dtype)
        except OverflowError:
            raise InvalidInputError(
                f"input '{name}': a value is out of range for {dtype}") from None
    # Integers: refuse floats rather than truncate them silently.
    if kind not in "iub":
        raise InvalidInputError(
            f"input '{name}': expected integers for {dtype}, got {_kinds(raw)}")
    arr = raw.astype(dtype, copy=False)
    if kind in "iu" and not np.array_equal(arr, raw):
        raise InvalidInputError(f"input '{name}': a value is out of range for {dtype}")
    return arr


def _kinds(raw: np.ndarray) -> str:
    return {"f": "floats", "U": "strings", "O": "null or mixed values"}.get(
        raw.dtype.kind, f"{raw.dtype} values")


def _all_of(data: Any, types: tuple[type, ...]) -> bool:
    """Whether every leaf of ``data`` has exactly one of ``types`` (bool is no int here)."""
    try:
        obj = np.asarray(data, dtype=object)
    except ValueError:
        return False
    return obj.size > 0 and all(type(v) in types for v in obj.flat)


def _flatten(data: Any, depth: int = 0) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if depth >= MAX_JSON_DEPTH:
        # _depth only follows first elements; a later, deeper item is caught here.
        raise InvalidInputError(f"data is nested deeper than {MAX_JSON_DEPTH}")
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item, depth + 1))
    return out


def _count_error(name: str, shape: tuple[int, ...], expected: int, got: int) -> InvalidInputError:
    return InvalidInputError(
        f"input '{name}': shape {list(shape)} needs {expected} elements, data has {got}")


def array_from_buffer(name: str, view: memoryview, datatype: DataType,
                      shape: tuple[int, ...], source: str = "binary_data_size") -> np.ndarray:
    """A zero-copy typed view over a request body slice; sizes checked first.

    ``source`` names where the bytes came from in the client's terms (HTTP's
    binary_data_size, gRPC's raw_input_contents entry).
    """
    expected = element_count(shape) * datatype.itemsize
    if view.nbytes != expected:
        raise InvalidInputError(
            f"input '{name}': {source} is {view.nbytes} bytes but shape {list(shape)} "
            f"of {datatype.wire} needs {expected}")
    dtype = np.bool_ if datatype is DataType.BOOL else np.dtype(datatype.numpy)
    return np.frombuffer(view, dtype=dtype).reshape(shape)


def spec_named(specs: tuple[TensorSpec, ...], name: str) -> TensorSpec | None:
    """The output spec called ``name``, if declared (what datatype_of asks for)."""
    for spec in specs:
        if spec.name == name:
            return spec
    return None


def datatype_of(arr: Any, spec: TensorSpec | None = None) -> DataType:
    """The wire datatype of an output array (BF16 arrives as uint16 with a BF16 spec)."""
    if spec is not None and spec.datatype is DataType.BF16 and arr.dtype == np.uint16:
        return DataType.BF16
    try:
        return _BY_NUMPY[arr.dtype]
    except KeyError:
        return DataType.parse(arr.dtype.name)
