"""ModelInferRequest <-> fastserve tensors without a server (fastserve.grpc.tensors)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from fastserve.core.shm import SharedMemoryRegistry
from fastserve.errors import ForbiddenError, InvalidInputError
from fastserve.grpc import raw_inputs, wire
from fastserve.grpc.services import Malformed
from fastserve.grpc.tensors import OutputOptions, decode_request, encode_response, parameters
from fastserve.types import DataType, InferResponse, TensorSpec

NO_SHM = SharedMemoryRegistry(enabled=False)


def test_raw_and_typed_inputs_and_parameters() -> None:
    request = pb.ModelInferRequest(model_name="m", model_version="2", id="7")
    request.parameters["priority"].int64_param = 3
    request.inputs.add(name="a", datatype="INT16", shape=[2, 2]).contents.int_contents.extend(
        [1, -2, 3, 4])
    request.inputs.add(name="s", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(
        [b"x", b""])
    out = request.outputs.add(name="y")
    out.parameters["classification"].int64_param = 2
    decoded, options = decode_request(request, NO_SHM)
    assert (decoded.model, decoded.version, decoded.id) == ("m", "2", "7")
    assert decoded.parameters == {"priority": 3}
    assert decoded.inputs["a"].dtype == np.int16 and decoded.inputs["a"].tolist() == [[1, -2],
                                                                                      [3, 4]]
    assert decoded.inputs["s"].tolist() == [b"x", b""]
    assert decoded.outputs == ["y"] and options.classification == {"y": 2}

    raw = pb.ModelInferRequest(model_name="m")
    raw.inputs.add(name="f", datatype="FP16", shape=[3])
    raw.inputs.add(name="s", datatype="BYTES", shape=[2])
    raw.raw_input_contents.extend([np.arange(3, dtype="<f2").tobytes(),
                                   struct.pack("<I", 2) + b"hi" + struct.pack("<I", 0)])
    decoded, _ = decode_request(raw, NO_SHM)
    assert decoded.version is None and decoded.outputs is None
    assert decoded.inputs["f"].tolist() == [0, 1, 2]
    assert decoded.inputs["s"].tolist() == [b"hi", b""]


@pytest.mark.parametrize("build, error", [
    (lambda r: r.inputs.add(name="a", datatype="INT8", shape=[1]).contents.int_contents.append(
        300), InvalidInputError),
    (lambda r: r.inputs.add(name="a", datatype="FP16", shape=[1]).contents.fp32_contents.append(
        1.0), InvalidInputError),
    (lambda r: r.inputs.add(name="a", datatype="INT32", shape=[2]).contents.int_contents.append(
        1), InvalidInputError),
    (lambda r: (r.inputs.add(name="s", datatype="BYTES", shape=[1]),
                r.raw_input_contents.append(b"\x09\0\0\0ab")), InvalidInputError),
    (lambda r: (r.inputs.add(name="a", datatype="FP32", shape=[1]),
                r.inputs[0].parameters["shared_memory_region"].__setattr__("string_param", "r")),
     ForbiddenError),
    (lambda r: None, InvalidInputError),
])
def test_bad_inputs(build, error) -> None:
    request = pb.ModelInferRequest(model_name="m")
    build(request)
    with pytest.raises(error):
        decode_request(request, NO_SHM)


def test_values_in_another_types_contents_field_are_named() -> None:
    """FP32 values sent in int_contents: the error names the field they belong in (before,
    it said "0 elements in fp32_contents", which reads like an empty request)."""
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="a", datatype="FP32", shape=[2]).contents.int_contents.extend([1, 2])
    with pytest.raises(InvalidInputError) as info:
        decode_request(request, NO_SHM)
    assert "fp32_contents" in info.value.message and "int_contents" in info.value.message


def test_response_raw_outputs_by_index() -> None:
    response = InferResponse("m", "1", {
        "y": np.array([[1.5, 2.5]], np.float32),
        "s": np.array([b"ab", b""], dtype=object),
        "h": np.array([1, 2], np.uint16)}, "id-1")
    specs = (TensorSpec("h", DataType.BF16, (-1,)),)
    answer = pb.ModelInferResponse.FromString(
        encode_response(response, OutputOptions(), specs, NO_SHM))
    assert answer.id == "id-1" and answer.model_version == "1"
    assert [(o.name, o.datatype, list(o.shape)) for o in answer.outputs] == [
        ("y", "FP32", [1, 2]), ("s", "BYTES", [2]), ("h", "BF16", [2])]
    assert np.frombuffer(answer.raw_output_contents[0], np.float32).tolist() == [1.5, 2.5]
    assert answer.raw_output_contents[1] == b"\x02\0\0\0ab\0\0\0\0"
    assert parameters(pb.ModelInferRequest().parameters) == {}


@pytest.mark.parametrize("request_id", ["", "id-7", "é" * 100])
def test_response_bytes_are_protobufs_own(request_id: str) -> None:
    # The hand-made concatenation (grpc/wire.py) against protobuf serializing the same
    # message: byte for byte, with a long id and a 300-byte output (2-byte lengths), twice
    # (the second from the cached head).
    y = np.arange(75, dtype=np.float32).reshape(3, 25)
    z = np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))  # not C-ordered
    for _ in range(2):
        got = encode_response(InferResponse("m", "3", {"y": y, "z": z}, request_id),
                              OutputOptions(), (), NO_SHM)
        want = pb.ModelInferResponse(model_name="m", model_version="3", id=request_id)
        want.outputs.add(name="y", datatype="FP32", shape=[3, 25])
        want.outputs.add(name="z", datatype="INT64", shape=[2, 3])
        want.raw_output_contents.extend([y.tobytes(), np.ascontiguousarray(z).tobytes()])
        assert got == want.SerializeToString()
    stream = pb.ModelStreamInferResponse.FromString(wire.stream_response(got))
    assert stream.infer_response == want and stream.error_message == ""


def big_request() -> tuple[Any, list[bytes]]:
    rng = np.random.default_rng(5)
    raws = [rng.bytes(70_000), b"", rng.bytes(300), rng.bytes(200_000)]
    request = pb.ModelInferRequest(model_name="m", model_version="2", id="x" * 200)
    request.parameters["p"].string_param = "v"
    for i in range(4):
        request.inputs.add(name=f"in{i}", datatype="UINT8", shape=[len(raws[i])])
    request.outputs.add(name="y")
    request.raw_input_contents.extend(raws)
    return request, raws


def test_large_request_raw_contents_are_views() -> None:
    request, raws = big_request()
    data = request.SerializeToString()
    parsed = raw_inputs.parse_infer_request(data)
    assert type(parsed) is raw_inputs.SplitRequest
    assert [bytes(v) for v in parsed.raw_input_contents] == raws
    assert all(v.obj is data for v in parsed.raw_input_contents)  # no copy
    rest = pb.ModelInferRequest()
    rest.CopyFrom(request)
    del rest.raw_input_contents[:]
    assert parsed.message == rest and parsed.id == "x" * 200
    decoded, _ = decode_request(parsed, NO_SHM)
    assert [decoded.inputs[f"in{i}"].tobytes() for i in range(4)] == raws
    # A small request is protobuf's alone.
    assert type(raw_inputs.parse_infer_request(pb.ModelInferRequest(
        model_name="m").SerializeToString())) is pb.ModelInferRequest


@pytest.mark.parametrize("cut", [1, 7, 100, 70_010, -1])
def test_large_request_malformed(cut: int) -> None:
    data = big_request()[0].SerializeToString()
    broken = data[:-cut] + b"\x00" * 70_000 if cut < 100 else data[:cut] + data[-1:] * 70_000
    parsed = raw_inputs.parse_infer_request(broken)
    assert type(parsed) is Malformed, cut
    assert "ModelInferRequest" in parsed.message
    bad_wire = b"\x0b" + data  # field 1 as a (deprecated) group start
    assert type(raw_inputs.parse_infer_request(bad_wire)) is Malformed
