"""TF Serving's JSON (its ``util/json_tensor.cc``): parsing, values, and outputs as TF's
row or columnar JSON. Binary values travel as {"b64": ...}. Requests become arrays in
_tf_inputs.

Non-finite floats: TF Serving parses with rapidjson's kParseNanAndInfFlag and writes
them as the bare tokens ``NaN``, ``Infinity`` and ``-Infinity`` (WriteDecimal). orjson
is strict RFC 8259: it refuses the tokens when reading and writes ``null`` for them. So:

- reading tries orjson and falls back to the stdlib parser (which accepts the tokens)
  only when orjson refuses the document;
- writing stays on orjson; an array holding a non-finite value is written by orjson
  and its ``null``s (in a numeric array, exactly the non-finite elements, in row-major
  order) are replaced by the tokens, inside an ``orjson.Fragment``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
import orjson

from ..core.tensors import bf16_to_float
from ..errors import InvalidInputError
from ..types import DataType, TensorSpec

OPTIONS = orjson.OPT_SERIALIZE_NUMPY
B64 = "b64"
# TorchServe's KServe envelope sends binary instances as {"data": "<base64>"}.
DATA = "data"
# TF Serving: string outputs whose name ends in this are written as {"b64": ...}.
BYTES_SUFFIX = "_bytes"


def loads(body: Any) -> Any:
    """Parse a request body; NaN, Infinity and -Infinity are read as floats."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        strict_error = exc
    try:
        return json.loads(bytes(body))
    except (ValueError, RecursionError):
        raise InvalidInputError(f"JSON Parse error: {strict_error}") from None


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=OPTIONS)


def _token(value: float) -> bytes:
    if value != value:
        return b"NaN"
    return b"Infinity" if value > 0 else b"-Infinity"


def float_json(arr: Any) -> Any:
    """A float array (or numpy scalar) as orjson writes it, with TF's non-finite tokens."""
    if np.ndim(arr) == 0:
        value = float(arr)
        return arr if np.isfinite(value) else orjson.Fragment(_token(value))
    arr = np.ascontiguousarray(arr)
    finite = np.isfinite(arr)
    if finite.all():
        return arr
    raw = orjson.dumps(arr, option=OPTIONS)
    parts = raw.split(b"null")
    tokens = [_token(float(v)) for v in arr[~finite]]
    out = bytearray(parts[0])
    for token, part in zip(tokens, parts[1:], strict=True):
        out += token
        out += part
    return orjson.Fragment(bytes(out))


def b64_object(data: bytes) -> dict[str, str]:
    return {B64: base64.b64encode(data).decode("ascii")}


def bytes_json(arr: np.ndarray, binary: bool) -> Any:
    """A BYTES array as nested lists: UTF-8 text, or {"b64": ...} when ``binary``.

    A non-``_bytes`` element that is not UTF-8 is written as {"b64": ...} too, rather
    than as a string that would not be valid JSON.
    """
    out = np.empty(arr.size, dtype=object)
    for i, item in enumerate(arr.ravel()):
        if isinstance(item, str):
            item = item.encode("utf-8")
        elif not isinstance(item, (bytes, bytearray)):
            item = str(item).encode("utf-8")
        if binary:
            out[i] = b64_object(item)
            continue
        try:
            out[i] = item.decode("utf-8")
        except UnicodeDecodeError:
            out[i] = b64_object(item)
    return out.reshape(arr.shape).tolist()


def is_binary_object(value: Any, data_is_input: bool = False) -> bool:
    """{"b64": "<base64>"}, or TorchServe's {"data": "<base64>"}: exactly one string key."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key, inner = next(iter(value.items()))
    return isinstance(inner, str) and (key == B64 or (key == DATA and not data_is_input))


def decode_b64(name: str, value: dict[str, str]) -> bytes:
    text = next(iter(value.values()))
    try:
        # NOTE: absl::Base64Unescape (TF Serving) accepts a missing '=' padding.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(
            f"input '{name}': {{\"{next(iter(value))}\": ...}} is not valid base64: {exc}"
        ) from None


# Response encoding


def _value(arr: Any, name: str, spec: TensorSpec | None) -> Any:
    """One output (or one row of it) as a JSON-ready value."""
    if isinstance(arr, np.ndarray) and arr.dtype == object:
        return bytes_json(arr, name.endswith(BYTES_SUFFIX))
    if spec is not None and spec.datatype is DataType.BF16 and arr.dtype == np.uint16:
        arr = bf16_to_float(np.asarray(arr))
    if arr.dtype.kind == "f":
        return float_json(arr)
    return np.ascontiguousarray(arr) if isinstance(arr, np.ndarray) else arr


def encode_rows(outputs: dict[str, Any], specs: dict[str, TensorSpec]) -> Any:
    """Row format: a single output unnamed (a list of rows); several as one object per row."""
    rows = -1
    for name, arr in outputs.items():
        if arr.ndim == 0:
            raise InvalidInputError(f"Tensor name: {name} has no shape information; ask for "
                                    "the columnar format ('inputs') instead")
        if rows >= 0 and arr.shape[0] != rows:
            raise InvalidInputError(
                f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} expecting: "
                f"{rows}; ask for the columnar format ('inputs') instead")
        rows = arr.shape[0]
    if len(outputs) == 1:
        name, arr = next(iter(outputs.items()))
        return _value(arr, name, specs.get(name))
    columns = {name: _value(arr, name, specs.get(name)) for name, arr in outputs.items()}
    for name, column in columns.items():
        if not isinstance(column, (np.ndarray, list)):  # a Fragment: split per row
            columns[name] = [_value(row, name, specs.get(name)) for row in outputs[name]]
    return [{name: column[i] for name, column in columns.items()} for i in range(rows)]


def encode_columns(outputs: dict[str, Any], specs: dict[str, TensorSpec]) -> Any:
    """Columnar format: a single output as its value; several as an object by name."""
    if len(outputs) == 1:
        name, arr = next(iter(outputs.items()))
        return _value(arr, name, specs.get(name))
    return {name: _value(arr, name, specs.get(name)) for name, arr in outputs.items()}
