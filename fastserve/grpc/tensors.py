"""ModelInferRequest -> InferRequest and InferResponse -> ModelInferResponse.

Inputs come as typed ``contents`` or as ``raw_input_contents`` (one entry per input that
has neither contents nor a shared-memory region, in input order; little-endian, BYTES
elements each behind a 4-byte length). Outputs always go back as
``raw_output_contents``, one entry per output (empty for one written to shared memory),
which is what tritonclient's ``as_numpy`` reads by index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from .. import codec
from ..core.info import ModelInfo
from ..core.shm import SharedMemoryRegistry
from ..core.tensors import (
    array_from_buffer,
    bytes_array,
    check_shape,
    datatype_of,
    element_count,
    spec_named,
)
from ..errors import InvalidInputError
from ..frontends._v2 import MAX_CLASSIFICATION
from ..types import DataType, InferRequest, InferResponse, TensorSpec
from . import wire

# Which typed field of InferTensorContents carries each datatype (FP16/BF16: raw only).
CONTENTS_FIELD = {
    DataType.BOOL: "bool_contents",
    DataType.INT8: "int_contents", DataType.INT16: "int_contents",
    DataType.INT32: "int_contents", DataType.INT64: "int64_contents",
    DataType.UINT8: "uint_contents", DataType.UINT16: "uint_contents",
    DataType.UINT32: "uint_contents", DataType.UINT64: "uint64_contents",
    DataType.FP32: "fp32_contents", DataType.FP64: "fp64_contents",
    DataType.BYTES: "bytes_contents",
}


class OutputOptions:
    """Per requested output: Triton's top-k classification and shared-memory targets."""

    __slots__ = ("classification", "shared_memory")

    def __init__(self) -> None:
        self.classification: dict[str, int] = {}
        self.shared_memory: dict[str, dict[str, Any]] = {}


class InferBody:
    """A ModelInferRequest, decoded when the data plane asks (``DataPlane.infer_body``,
    core.info.TensorBody): it keeps the model's info and the client's output options for
    the answer."""

    __slots__ = ("request", "shared_memory", "info", "options")

    def __init__(self, request: pb.ModelInferRequest, shared_memory: SharedMemoryRegistry
                 ) -> None:
        self.request = request
        self.shared_memory = shared_memory
        self.info: ModelInfo | None = None
        self.options = OutputOptions()

    def tensors(self, info: ModelInfo) -> InferRequest:
        self.info = info
        infer_request, self.options = decode_request(self.request, self.shared_memory)
        return infer_request


def parameters(params: Any) -> dict[str, Any]:
    """A protobuf map<string, InferParameter> as plain values."""
    return {key: getattr(p, p.WhichOneof("parameter_choice") or "bool_param")
            for key, p in params.items()}


def decode_request(request: pb.ModelInferRequest, shm: SharedMemoryRegistry
                   ) -> tuple[InferRequest, OutputOptions]:
    raw = request.raw_input_contents
    inputs: dict[str, Any] = {}
    next_raw = 0
    for tensor in request.inputs:
        name = tensor.name
        if name in inputs:
            raise InvalidInputError(f"input '{name}' appears twice")
        try:
            datatype = DataType.parse(tensor.datatype)
        except ValueError as exc:
            raise InvalidInputError(f"input '{name}': {exc}") from None
        shape = check_shape(name, list(tensor.shape))
        params = parameters(tensor.parameters) if tensor.parameters else {}
        has_contents = tensor.HasField("contents")
        if "shared_memory_region" in params:
            if has_contents:
                raise InvalidInputError(f"input '{name}' sets both contents and "
                                        "shared_memory_region")
            view = shm.view(f"input '{name}'", params)
        elif has_contents:
            if raw:
                raise InvalidInputError(
                    f"contents field must not be specified when using raw_input_contents "
                    f"for '{name}' for model '{request.model_name}'")
            inputs[name] = _from_contents(name, tensor.contents, datatype, shape)
            continue
        else:
            if next_raw >= len(raw):
                raise InvalidInputError(
                    f"input '{name}' has no contents, raw_input_contents entry or "
                    "shared_memory_region")
            view = memoryview(raw[next_raw])
            next_raw += 1
        if datatype is DataType.BYTES:
            items = codec.decode_bytes_tensor(view, name, element_count(shape))
            inputs[name] = bytes_array(items, shape)
        else:
            source = ("shared memory region" if "shared_memory_region" in params
                      else "raw_input_contents entry")
            inputs[name] = array_from_buffer(name, view, datatype, shape, source)
    if not inputs:
        raise InvalidInputError("the request has no inputs")
    if next_raw != len(raw):
        raise InvalidInputError(f"expected {next_raw} raw_input_contents entries (one per "
                                f"input without contents), got {len(raw)}")
    options = OutputOptions()
    wanted = None
    if request.outputs:
        wanted = []
        for out in request.outputs:
            wanted.append(out.name)
            out_params = parameters(out.parameters) if out.parameters else {}
            k = out_params.get("classification")
            if k is not None:
                if not isinstance(k, int) or isinstance(k, bool) or not 0 < k <= \
                        MAX_CLASSIFICATION:
                    raise InvalidInputError(f"output '{out.name}': classification must be a "
                                            f"positive integer (the top-k count), got {k!r}")
                options.classification[out.name] = k
            if "shared_memory_region" in out_params:
                options.shared_memory[out.name] = out_params
    request_params = parameters(request.parameters) if request.parameters else {}
    return (InferRequest(request.model_name, request.model_version or None, inputs, wanted,
                         request.id or None, request_params), options)


def _from_contents(name: str, contents: Any, datatype: DataType, shape: tuple[int, ...]
                   ) -> Any:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInputError(f"input '{name}': {datatype.wire} has no typed contents "
                                "field; send it in raw_input_contents")
    values = getattr(contents, field)
    expected = element_count(shape)
    sent = [f.name for f, _ in contents.ListFields()]
    if not values and sent:
        raise InvalidInputError(f"input '{name}' is {datatype.wire}: its values go in {field}, "
                                f"not {', '.join(sent)}")
    if len(values) != expected:
        raise InvalidInputError(f"input '{name}': {len(values)} elements in {field} but shape "
                                f"{list(shape)} needs {expected}")
    if datatype is DataType.BYTES:
        return bytes_array(list(values), shape)
    try:
        # Through a list of Python ints: numpy casts protobuf 7's container as an int32
        # array and would wrap 300 into an INT8 silently; ints out of range raise here.
        return np.array(list(values), dtype=datatype.numpy).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise InvalidInputError(f"input '{name}': {exc}") from None


def encode_response(response: InferResponse, options: OutputOptions,
                    specs: tuple[TensorSpec, ...], shm: SharedMemoryRegistry) -> bytes:
    """The serialized ModelInferResponse (grpc/wire.py builds it without a message)."""
    outputs = []
    raw: list[Any] = []
    for name, arr in response.outputs.items():
        datatype = datatype_of(arr, spec_named(specs, name))
        outputs.append((name, datatype.wire, arr.shape))
        data = raw_bytes(arr, datatype)
        target = options.shared_memory.get(name)
        if target is None:
            raw.append(data)
            continue
        view = shm.view(f"output '{name}'", target)
        if len(data) > view.nbytes:
            raise InvalidInputError(f"output '{name}' needs {len(data)} bytes but shared "
                                    f"memory region '{target['shared_memory_region']}' "
                                    f"offers {view.nbytes}")
        view[:len(data)] = data
        raw.append(b"")  # keeps raw_output_contents indexed as outputs
    return wire.infer_response(response.model, response.version, response.id or "",
                               tuple(outputs), raw)


def raw_bytes(arr: np.ndarray, datatype: DataType) -> Any:
    """The tensor's bytes (little-endian, C order) as a buffer: a view when the array is
    contiguous already, so they are copied once, into the answer."""
    if datatype is DataType.BYTES:
        return bytes(codec.encode_bytes_tensor(arr.ravel()))
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
