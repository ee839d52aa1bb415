"""A large ModelInferRequest parsed without copying its tensors: the top-level fields are
walked (a handful of keys), the ``raw_input_contents`` entries are kept as views of the
bytes grpcio handed over, and protobuf parses only the rest. protobuf's own parse would
copy every entry out of those bytes again (a fifth of a 602 KB call's CPU went to copies
and page faults on fresh buffers).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2 as pb

from .services import Malformed

RAW_INPUT_FIELD = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
SPLIT_ABOVE = 64 * 1024  # bytes: a smaller request is protobuf's alone (walking costs more)


class SplitRequest:
    """A ModelInferRequest whose ``raw_input_contents`` are views of the received bytes;
    every other field is the parsed message's."""

    __slots__ = ("message", "raw_input_contents")

    def __init__(self, message: pb.ModelInferRequest, raw: list[memoryview]) -> None:
        self.message = message
        self.raw_input_contents = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self.message, name)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]  # IndexError past the end: truncated
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint longer than 10 bytes")


def split(data: bytes) -> tuple[bytes, list[memoryview]]:
    """(the message's bytes without its raw_input_contents, a view of each entry)."""
    view = memoryview(data)
    kept: list[memoryview] = []
    raw: list[memoryview] = []
    pos, kept_from, end = 0, 0, len(data)
    while pos < end:
        field_start = pos
        key, pos = _varint(data, pos)
        wire_type = key & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if key >> 3 == RAW_INPUT_FIELD:
                if pos + length > end:
                    raise DecodeError("truncated raw_input_contents entry")
                kept.append(view[kept_from:field_start])
                raw.append(view[pos:pos + length])
                kept_from = pos + length
            pos += length
        else:
            raise DecodeError(f"wire type {wire_type} at byte {field_start}")
    if pos > end:
        raise DecodeError("truncated message")
    kept.append(view[kept_from:])
    return b"".join(kept), raw


def parse_infer_request(data: bytes) -> Any:
    """grpcio's request deserializer for ModelInfer and ModelStreamInfer."""
    try:
        if len(data) < SPLIT_ABOVE:
            return pb.ModelInferRequest.FromString(data)
        head, raw = split(data)
        return SplitRequest(pb.ModelInferRequest.FromString(head), raw)
    except (DecodeError, IndexError) as exc:
        return Malformed(f"the request is not a valid inference.ModelInferRequest message: "
                         f"{exc or 'truncated'}")
