"""Requests as TorchServe's API delivers them: a body (or a multipart part, or a KServe v1
instance) and the rules that type it (CONTRACT §3: by a specific Content-Type, else
sniffed), before a handler turns it into model inputs.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInputError
from ..types import HandlerReply

NPY_MAGIC = b"\x93NUMPY"
NPY_TYPES = ("application/x-npy", "application/npy", "application/x-numpy")
_JSON_START = frozenset(b"[{")
_WHITESPACE = b" \t\r\n"


@dataclass
class Payload:
    """One request instance: a /predictions body or multipart part, or a KServe v1 instance.

    ``content_type`` None means ``data`` is already a decoded JSON value; otherwise
    ``data`` is the bytes as received, typed by ``decode_body``. ``name`` is the
    parameter name a TorchServe handler sees ("body" for a raw body, a multipart
    part's field name); ``extra`` holds the query parameters (TorchServe passes them
    to handlers too) and ``headers`` the request headers.
    """

    data: Any
    content_type: str | None = None
    name: str = "body"
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[bytes, bytes] | None = None
    # TorchServe archives: where streamed parts go (types.ReplyStream), if the API streams.
    stream: Any = None


# Body typing


def decode_body(data: Any, content_type: str, handler_py: bool = False) -> Any:
    """Type a body as CONTRACT §3 says: by a specific Content-Type, else by sniffing.

    JSON -> the decoded value; npy -> a numpy array; anything else -> the bytes. For
    handler.py models (as TorchServe hands them over) npy stays bytes and text/* is a str.

    Raises:
        InvalidInputError: a body typed as JSON or npy that does not parse (400).
    """
    ct = content_type
    if ct == "application/json" or ct.endswith("+json"):
        return load_json(data)
    if ct.startswith("image/"):
        return _raw(data, handler_py)
    if handler_py and ct.startswith("text/"):
        return bytes(data).decode("utf-8", "replace")
    if ct in NPY_TYPES:
        return _raw(data, handler_py) if handler_py else load_npy(data)
    head = bytes(data[:8])
    if head.startswith(NPY_MAGIC):
        return _raw(data, handler_py) if handler_py else load_npy(data)
    first = head.lstrip(_WHITESPACE)[:1]
    if not first and len(data) > 8:
        first = bytes(data[:1024]).lstrip(_WHITESPACE)[:1]
    if first and first[0] in _JSON_START:
        return load_json(data)
    return _raw(data, handler_py)


def _raw(data: Any, handler_py: bool) -> Any:
    # TorchServe hands handlers a bytearray; the core handlers read any bytes-like.
    if handler_py and not isinstance(data, bytearray):
        return bytearray(data)
    return data


def load_json(data: Any) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"the body is not valid JSON: {exc}") from None


def load_npy(data: Any) -> np.ndarray:
    """A .npy body as an array; the header is checked against the length before any copy."""
    view = memoryview(data).cast("B")
    stream = io.BytesIO(view)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise InvalidInputError(f"the body is not a valid .npy file: {exc}") from None
    if dtype.hasobject:
        raise InvalidInputError(".npy bodies with Python objects are not accepted")
    offset = stream.tell()
    expected = math.prod(shape) * dtype.itemsize
    if len(view) - offset != expected:
        raise InvalidInputError(
            f".npy header says shape {list(shape)} of {dtype} ({expected} bytes) but "
            f"{len(view) - offset} bytes follow it")
    arr = np.frombuffer(view, dtype=dtype, count=math.prod(shape), offset=offset)
    if fortran:
        return arr.reshape(shape[::-1]).transpose()
    return arr.reshape(shape)


def b64decode(text: str, what: str = "value") -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"the {what} is not valid base64: {exc}") from None


def kserve_payload(instance: Any, decode_data: bool) -> Payload:
    """A KServe v1 instance as a payload: {"b64": s}, {"data": ...} (+ "target"), or JSON.

    ``decode_data``: a string under "data" is base64 (image and handler.py models).
    """
    if isinstance(instance, dict):
        rest = dict(instance)
        if isinstance(rest.get("b64"), str) and len(rest) <= 2:
            return Payload(b64decode(rest.pop("b64"), "b64 instance"), "", "body", rest)
        if "data" in rest and len(rest) <= 2 and (len(rest) == 1 or "target" in rest):
            value = rest.pop("data")
            if isinstance(value, str) and decode_data:
                return Payload(b64decode(value, "data instance"), "", "data", rest)
            if isinstance(value, dict) and isinstance(value.get("b64"), str):
                return Payload(b64decode(value["b64"], "b64 instance"), "", "data", rest)
            return Payload(value, None, "data", rest)
    return Payload(instance)


def parse_target(value: Any) -> int | tuple[int, ...] | None:
    """The class to explain: an int, a list of ints (a multi-dimensional output), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidInputError(f"target must be an integer, got {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, list) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise InvalidInputError(f"target must be an integer (or a list of integers), got {value!r}")


def reply_value(answer: Any) -> Any:
    """A TorchServe archive's answer (types.HandlerReply) as a JSON value, for APIs that
    list answers inside their own JSON (KServe v1 ``predictions``): its JSON body decoded,
    else its text; other answers as they are."""
    if not isinstance(answer, HandlerReply):
        return answer
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return answer.body.decode("utf-8", "replace")
