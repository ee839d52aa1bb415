"""ModelInferResponse bytes without a message object on the way out: a protobuf message is
the concatenation of its fields, so the answer is the serialized head (model_name,
model_version, id, the outputs' name/datatype/shape -- cached, they repeat call after call)
followed by each raw_output_contents entry behind its tag and length. The tensor bytes are
copied once, into the answer, instead of into a message and again when it is serialized.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import service_pb2 as pb

RAW_OUTPUT_TAG = b"\x32"  # field 6 (raw_output_contents), wire type 2 (length-delimited)
ID_TAG = b"\x1a"  # field 3 (id), wire type 2
INFER_RESPONSE_TAG = b"\x12"  # ModelStreamInferResponse.infer_response: field 2, wire type 2
MAX_CACHED = 4096  # heads kept; past that the cache starts again (shapes vary without bound)

_heads: dict[tuple, bytes] = {}


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def head(model: str, version: str, outputs: tuple[tuple[str, str, tuple[int, ...]], ...]
         ) -> tuple[bytes, bytes]:
    """(model_name + model_version fields, outputs fields), serialized by protobuf once."""
    key = (model, version, outputs)
    found = _heads.get(key)
    if found is None:
        if len(_heads) >= MAX_CACHED:
            _heads.clear()
        names = pb.ModelInferResponse(model_name=model, model_version=version)
        tensors = pb.ModelInferResponse()
        for name, datatype, shape in outputs:
            tensors.outputs.add(name=name, datatype=datatype, shape=shape)
        found = _heads[key] = (names.SerializeToString(), tensors.SerializeToString())
    return found


def infer_response(model: str, version: str, request_id: str,
                   outputs: tuple[tuple[str, str, tuple[int, ...]], ...],
                   raw: list[Any]) -> bytes:
    """A serialized ModelInferResponse: fields in protobuf's own order (1, 2, 3, 5, 6);
    ``raw`` holds buffers (bytes, uint8 arrays), one per output."""
    names, tensors = head(model, version, outputs)
    parts = [names]
    if request_id:
        encoded = request_id.encode()
        parts += (ID_TAG, varint(len(encoded)), encoded)
    parts.append(tensors)
    for data in raw:
        parts += (RAW_OUTPUT_TAG, varint(len(data)), data)
    return b"".join(parts)


def stream_response(infer_response: bytes) -> bytes:
    """A serialized ModelStreamInferResponse carrying an already serialized answer."""
    return INFER_RESPONSE_TAG + varint(len(infer_response)) + infer_response
