"""How TorchServe writes one answer, shared by its HTTP (frontends/torchserve) and gRPC
(fastserve/grpc) front-ends."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from ..http.messages import OCTET_STREAM, Response
from ..types import HandlerReply
from ._ts_archive import reply_response

TEXT = b"text/plain; charset=utf-8"


def _default(obj: Any) -> Any:
    # What orjson leaves to us: non-contiguous or odd numpy values, bytes, tuples, sets.
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"an answer holds a {type(obj).__name__}, which cannot be written as JSON")


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"the answer cannot be written as JSON: {exc}") from None


def answer_response(answer: Any) -> Response:
    """One answer: bytes as they are, text as text (as TorchServe sends them), else JSON;
    a TorchServe archive's (HandlerReply) with its own status, type and headers."""
    if isinstance(answer, HandlerReply):
        return reply_response(answer)
    if isinstance(answer, (bytes, bytearray, memoryview)):
        return Response(bytes(answer), content_type=OCTET_STREAM)
    if isinstance(answer, str):
        return Response(answer.encode("utf-8"), content_type=TEXT)
    return Response(dumps(answer))
