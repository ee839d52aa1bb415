"""TorchServe's worker protocol, as a handler sees it: the request list built from
fastserve's payloads, each answer serialized as the worker writes it, and the socket
``send_intermediate_predict_response`` writes streamed parts to."""

from __future__ import annotations

import io
import json
import struct
from typing import Any
from urllib.parse import parse_qsl

import orjson
import torch

from ..errors import BackendError
from ..types import HandlerReply
from . import ts_envelope

MULTIPART = "multipart/form-data"
_ORJSON = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
FORM = "application/x-www-form-urlencoded"


def serialize(value: Any) -> bytes:
    """One answer as TorchServe's worker writes it (otf_message_handler)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()
    try:
        # orjson writes json.dumps(indent=2)'s layout ~20x faster; where its output could
        # differ in meaning (non-ASCII, which json escapes; NaN/Infinity, which orjson
        # writes as null) json.dumps writes it, as TorchServe's worker does.
        fast = orjson.dumps(value, default=_json_default, option=_ORJSON)
        if fast.isascii() and b"null" not in fast:
            return fast
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return json.dumps(value, indent=2, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise BackendError(f"the handler's answer cannot be written as JSON: {exc}") from None


def _json_default(obj: Any) -> Any:
    # TorchServe fails these; tensors and numpy values inside an answer are common enough.
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def check_size(body: bytes) -> None:
    limit = ts_envelope.settings.max_response_size
    if limit and len(body) > limit:
        raise BackendError(f"the handler's answer is {len(body)} bytes, over max_response_size "
                           f"({limit})")


def typed(value: Any, content_type: str) -> Any:
    """A parameter's value as the worker types it: JSON decoded, text/* as str, else bytes."""
    data = bytes(value)
    if content_type == "application/json":
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return bytearray(data)
    if content_type.startswith("text"):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return bytearray(data)
    return bytearray(data)


class StreamSocket:
    """Stands in for the worker's socket: ``send_intermediate_predict_response`` writes a
    predict message here; each request's part goes to its client's stream (or is kept
    and sent before the final answer when the client's API cannot stream)."""

    def __init__(self) -> None:
        self.streams: dict[str, Any] = {}
        self.held: dict[str, list[bytes]] = {}

    def sendall(self, message: bytes) -> None:
        for request_id, part in parse_predict_message(bytes(message)):
            stream = self.streams.get(request_id)
            if stream is not None:
                stream.push(part)
            else:
                self.held.setdefault(request_id, []).append(part.body)


def parse_predict_message(msg: bytes) -> list[tuple[str, HandlerReply]]:
    """The (request id, part) pairs of one create_predict_response message."""
    pos = 0

    def read_int() -> int:
        nonlocal pos
        (value,) = struct.unpack_from("!i", msg, pos)
        pos += 4
        return value

    def read_bytes() -> bytes:
        nonlocal pos
        n = read_int()
        chunk = msg[pos:pos + max(n, 0)]
        pos += max(n, 0)
        return chunk

    read_int()  # batch code
    read_bytes()  # message
    parts = []
    while True:
        n = read_int()
        if n < 0:
            return parts
        request_id = msg[pos:pos + n].decode("utf-8")
        pos += n
        content_type = read_bytes().decode("utf-8") or None
        status = read_int()
        read_bytes()  # reason phrase
        headers = {}
        for _ in range(read_int()):
            key = read_bytes().decode("utf-8")
            headers[key] = read_bytes().decode("utf-8")
        headers.pop("ts_stream_next", None)
        headers.pop("content-type", None)
        parts.append((request_id, HandlerReply(read_bytes(), status, content_type, headers)))



def request_row(payload: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """TorchServe's request dict (parameters by name) and its header map for one payload."""
    headers: dict[str, Any] = {}
    for key, value in (payload.headers or {}).items():
        headers[key.decode("latin-1")] = value.decode("latin-1")
    row: dict[str, Any] = {}
    if payload.content_type == MULTIPART:  # the data is [(field, content type, bytes)]
        for name, ctype, data in payload.data:
            row[name] = typed(data, ctype)  # "" for a plain field: bytes
            headers[name] = {"content-type": ctype}
    elif payload.content_type == FORM:
        for name, value in parse_qsl(bytes(payload.data).decode("utf-8", "replace"),
                                     keep_blank_values=True):
            row[name] = bytearray(value.encode("utf-8"))
            headers[name] = {"content-type": ""}
    elif payload.content_type is None:  # already decoded (a KServe v1 instance)
        row[payload.name] = payload.data
        headers[payload.name] = {"content-type": "application/json"}
    else:
        row[payload.name] = typed(payload.data, payload.content_type)
        headers[payload.name] = {"content-type": payload.content_type}
    return row, headers

