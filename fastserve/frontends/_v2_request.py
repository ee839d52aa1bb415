"""KServe v2 request bodies -> InferRequest: JSON, or Triton's binary data extension.

Request body, binary extension (little-endian, row-major, no padding):
    | JSON header (Inference-Header-Content-Length bytes) |
    | input[0] raw (binary_data_size[0]) | input[1] raw | ... |
    BYTES element: | uint32 LE length | length bytes |
"""

from __future__ import annotations

from typing import Any

from .. import codec
from ..core.info import ModelInfo
from ..core.shm import SharedMemoryRegistry
from ..core.tensors import (
    array_from_buffer,
    array_from_json,
    bytes_array,
    check_shape,
    element_count,
    load_tensor_json,
)
from ..errors import InvalidInputError
from ..http.messages import Request
from ..types import BY_WIRE, DataType, InferRequest, TensorSpec
from ._base import load_json
from ._v2 import decode_outputs, flag

INFERENCE_HEADER_CONTENT_LENGTH = b"inference-header-content-length"


class OutputOptions:
    """What the client asked of the outputs: which, and which as binary."""

    __slots__ = ("binary_default", "binary", "classification", "shared_memory")

    def __init__(self, binary_default: bool, binary: dict[str, bool],
                 classification: dict[str, int] | None = None,
                 shared_memory: dict[str, dict[str, Any]] | None = None) -> None:
        self.binary_default = binary_default
        self.binary = binary
        self.classification = classification or {}
        self.shared_memory = shared_memory or {}


# NOTE: shared by many requests, so never changed after construction (nothing does).
ALL_BINARY = OutputOptions(True, {})  # before decoding, and a raw binary body's answer
ALL_JSON = OutputOptions(False, {})  # a request with no "parameters" and no "outputs"


class V2Body:
    """A v2 infer body, decoded when the data plane asks (``DataPlane.infer_body``): it
    keeps the model's info and the client's output options for the answer."""

    __slots__ = ("request", "shared_memory", "info", "options")

    def __init__(self, request: Request, shared_memory: SharedMemoryRegistry) -> None:
        self.request = request
        self.shared_memory = shared_memory
        self.info: ModelInfo | None = None
        self.options = ALL_BINARY

    def tensors(self, info: ModelInfo) -> InferRequest:
        self.info = info
        infer_request, self.options = decode(self.request, info.inputs, self.shared_memory)
        return infer_request


def decode(request: Request, specs: tuple[TensorSpec, ...], shared_memory: SharedMemoryRegistry
           ) -> tuple[InferRequest, OutputOptions]:
    """Body -> InferRequest with numpy inputs (views over the body where binary)."""
    body = request.body
    header_length = request.headers.get(INFERENCE_HEADER_CONTENT_LENGTH)
    tail = None
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidInputError(
                "Unable to parse Inference-Header-Content-Length, got: "
                f"{header_length.decode('latin-1')!r}") from None
        if n < 0 or n > len(body):
            raise InvalidInputError(
                f"Inference-Header-Content-Length must be in [0, {len(body)}] (the body "
                f"length), got {n}")
        if n == 0:
            return _decode_raw(body, specs)
        view = memoryview(body)
        header, tail = view[:n], view[n:]
        doc = load_json(header)  # small: the tensors that matter follow it in binary
    else:
        doc = load_tensor_json(body, load_json)
    if not isinstance(doc, dict):
        raise InvalidInputError("the inference request must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError("'inputs' must be a non-empty list of tensors")
    inputs = _decode_inputs(raw_inputs, tail, shared_memory)
    request_id = doc.get("id")
    if "parameters" not in doc and "outputs" not in doc:  # the usual request
        return (InferRequest("", None, inputs, None,
                             None if request_id is None else str(request_id), {}), ALL_JSON)
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInputError("'parameters' must be an object")
    wanted, binary, classification, shm = decode_outputs(doc.get("outputs"))
    return (
        InferRequest("", None, inputs, wanted,
                     None if request_id is None else str(request_id), params),
        OutputOptions(flag(params.get("binary_data_output", False),
                             "parameter 'binary_data_output'"), binary,
                       classification, shm),
    )

def _decode_inputs(raw_inputs: list[Any], tail: memoryview | None,
                   shared_memory: SharedMemoryRegistry) -> dict[str, Any]:
    inputs = (_plain_json_inputs(raw_inputs) if tail is None
              else _plain_binary_inputs(raw_inputs, tail))
    if inputs is not None:
        return inputs
    parsed = []
    shm_views: dict[str, memoryview] = {}
    sizes: list[tuple[str, int]] = []
    rest = None  # OVMS: one input without data or size takes the rest of the body
    for item in raw_inputs:
        if not isinstance(item, dict):
            raise InvalidInputError("each input must be an object with name, shape, datatype")
        name = item.get("name")
        if not isinstance(name, str):
            raise InvalidInputError("an input has no 'name' string")
        try:
            datatype = DataType.parse(item.get("datatype", ""))
        except ValueError as exc:
            raise InvalidInputError(f"input '{name}': {exc}") from None
        shape = check_shape(name, item.get("shape"))
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInputError(f"input '{name}': 'parameters' must be an object")
        sources = [k for k in ("binary_data_size", "shared_memory_region") if k in params]
        if "data" in item:
            sources.insert(0, "data")
        if len(sources) > 1:
            raise InvalidInputError(
                f"input '{name}' must set only one of 'data', 'binary_data_size' or "
                f"'shared_memory_region', but sets {' and '.join(sources)}")
        if "shared_memory_region" in params:
            shm_views[name] = shared_memory.view(f"input '{name}'", params)
        elif "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInputError(
                    f"input '{name}': binary_data_size must be a non-negative integer, "
                    f"got {size!r}")
            if tail is None:
                raise InvalidInputError(
                    f"input '{name}' has binary_data_size but the request has no "
                    "Inference-Header-Content-Length header")
            sizes.append((name, size))
        elif "data" not in item and "shared_memory_region" not in params:
            if rest is not None or tail is None:
                raise InvalidInputError(
                    f"input '{name}' must set one of 'data' or 'binary_data_size'")
            rest = name
            sizes.append((name, -1))
        parsed.append((name, datatype, shape, item.get("data")))
    if tail is not None:
        if rest is not None:
            known = sum(s for _, s in sizes if s >= 0)
            sizes = [(n, s if s >= 0 else max(len(tail) - known, 0)) for n, s in sizes]
        views = dict(zip((n for n, _ in sizes),
                         codec.split_binary_inputs(tail, sizes), strict=True))
    else:
        views = {}
    views.update(shm_views)
    inputs: dict[str, Any] = {}
    for name, datatype, shape, data in parsed:
        if name in inputs:
            raise InvalidInputError(f"input '{name}' appears twice")
        view = views.get(name)
        if view is None:
            inputs[name] = array_from_json(name, data, datatype, shape)
        elif datatype is DataType.BYTES:
            items = codec.decode_bytes_tensor(view, name, element_count(shape))
            inputs[name] = bytes_array(items, shape)
        else:
            inputs[name] = array_from_buffer(name, view, datatype, shape)
    return inputs

def _decode_raw(body: Any, specs: tuple[TensorSpec, ...]) -> tuple[InferRequest, OutputOptions]:
    """Inference-Header-Content-Length: 0 — the body is the only input, batch of 1."""
    if len(specs) != 1:
        raise InvalidInputError(
            f"a raw binary request (Inference-Header-Content-Length: 0) needs a model with "
            f"exactly one input; this one has {len(specs)}")
    spec = specs[0]
    if spec.datatype is DataType.BYTES:
        arr = bytes_array([bytes(body)], (1,))
    else:
        shape = [1 if i == 0 and d == -1 else d for i, d in enumerate(spec.shape)]
        if shape.count(-1) > 1:
            raise InvalidInputError(
                f"input '{spec.name}' has shape {list(spec.shape)}: a raw binary request "
                "allows at most one variable dimension")
        if -1 in shape:
            known = element_count([d for d in shape if d != -1]) * spec.datatype.itemsize
            if known == 0 or len(body) % known:
                raise InvalidInputError(
                    f"raw body of {len(body)} bytes does not fit input '{spec.name}' of "
                    f"shape {list(spec.shape)} ({spec.datatype.wire})")
            shape[shape.index(-1)] = len(body) // known
        arr = array_from_buffer(spec.name, memoryview(body), spec.datatype, tuple(shape))
    return InferRequest("", None, {spec.name: arr}), ALL_BINARY


def _plain_json_inputs(raw_inputs: list[Any]) -> dict[str, Any] | None:
    """The usual request, cheaply: every input an object with a name, an upper-case
    datatype, a shape of non-negative ints and ``data``, and no parameters. None for
    anything else, which the general path then checks item by item."""
    inputs: dict[str, Any] = {}
    for item in raw_inputs:
        if type(item) is not dict or item.get("parameters") or "data" not in item:
            return None
        name, shape = item.get("name"), item.get("shape")
        datatype = BY_WIRE.get(item.get("datatype"))
        if type(name) is not str or name in inputs or datatype is None or type(shape) is not list:
            return None
        for d in shape:  # a loop: a generator in all() costs more than these few dimensions
            if type(d) is not int or d < 0:
                return None
        inputs[name] = array_from_json(name, item["data"], datatype, tuple(shape))
    return inputs


def _plain_binary_inputs(raw_inputs: list[Any], tail: memoryview) -> dict[str, Any] | None:
    """The usual binary request, cheaply: every input an object with a name, a fixed-size
    datatype, a shape of non-negative ints and parameters holding only a binary_data_size
    that fits the shape, the sizes adding up to the tail. None for anything else, which
    the general path then checks (and words) item by item."""
    inputs: dict[str, Any] = {}
    pos, total = 0, len(tail)
    for item in raw_inputs:
        if type(item) is not dict or "data" in item:
            return None
        params, name, shape = item.get("parameters"), item.get("name"), item.get("shape")
        datatype = BY_WIRE.get(item.get("datatype"))
        if (type(params) is not dict or len(params) != 1 or type(name) is not str
                or name in inputs or datatype is None or datatype is DataType.BYTES
                or type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape)):
            return None
        size = params.get("binary_data_size")
        if type(size) is not int or size != element_count(shape) * datatype.itemsize or (
                pos + size > total):
            return None
        inputs[name] = array_from_buffer(name, tail[pos:pos + size], datatype, tuple(shape))
        pos += size
    return inputs if pos == total else None
