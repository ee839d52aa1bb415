"""Plain data types shared by every layer: datatypes, tensor specs, requests."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class DataType(enum.Enum):
    """KServe v2 datatype names, with element size and numpy dtype string."""

    BOOL = ("BOOL", 1, "bool")
    UINT8 = ("UINT8", 1, "uint8")
    UINT16 = ("UINT16", 2, "<u2")
    UINT32 = ("UINT32", 4, "<u4")
    UINT64 = ("UINT64", 8, "<u8")
    INT8 = ("INT8", 1, "int8")
    INT16 = ("INT16", 2, "<i2")
    INT32 = ("INT32", 4, "<i4")
    INT64 = ("INT64", 8, "<i8")
    FP16 = ("FP16", 2, "<f2")
    # NOTE: numpy has no bfloat16; BF16 travels as uint16 bit patterns until the backend.
    BF16 = ("BF16", 2, "<u2")
    FP32 = ("FP32", 4, "<f4")
    FP64 = ("FP64", 8, "<f8")
    BYTES = ("BYTES", 0, "object")

    def __init__(self, wire: str, itemsize: int, numpy: str) -> None:
        self.wire = wire
        self.itemsize = itemsize
        self.numpy = numpy

    # NOTE: members compare by identity (Enum's __eq__ is object's), so the identity hash
    # agrees with it; Enum's own __hash__ is a Python call on every dict lookup by
    # datatype (several per request).
    __hash__ = object.__hash__

    @classmethod
    def parse(cls, name: str) -> DataType:
        try:
            return BY_WIRE[name.upper() if isinstance(name, str) else name]
        except (KeyError, AttributeError):
            raise ValueError(
                f"unknown datatype {name!r}; expected one of {', '.join(BY_WIRE)}"
            ) from None


BY_WIRE = {dt.wire: dt for dt in DataType}  # exact wire names (parse() also takes lower case)


@dataclass(frozen=True)
class TensorSpec:
    """A declared model input or output; ``-1`` marks a variable dimension."""

    name: str
    datatype: DataType
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype.wire, "shape": list(self.shape)}


@dataclass
class InferRequest:
    """One client request after decoding: named arrays (numpy) or lists of bytes (BYTES).

    ``inputs`` keeps request order; ``outputs`` names the outputs wanted (None: all).
    """

    model: str
    version: str | None
    inputs: dict[str, Any]
    outputs: list[str] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    # Set by the transport: a zero-argument callable that says whether the client left.
    is_disconnected: Any = None


@dataclass
class InferResponse:
    """The answer to one InferRequest: output name -> numpy array (or list of bytes)."""

    model: str
    version: str
    outputs: dict[str, Any]
    id: str | None = None


@dataclass
class HandlerReply:
    """One answer of a TorchServe handler, serialized as its worker does (bytes as they
    are, text as UTF-8, anything else as JSON), with what the handler set through its
    context: status, content type (None: TorchServe's default) and response headers."""

    body: bytes
    status: int = 200
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class ReplyStream:
    """The parts of one streamed answer (``send_intermediate_predict_response``).

    The instance thread ``push``es each part as the handler produces it; the front-end
    awaits ``first`` and then ``next_part``. The final part is the request's own answer,
    which the scheduler resolves after the parts (both travel through
    ``call_soon_threadsafe``, so their order holds).
    """

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.first: Any = loop.create_future()
        self._parts: Any = None  # an asyncio.Queue once a second part comes (most never)

    def _queue(self) -> Any:
        if self._parts is None:
            import asyncio

            self._parts = asyncio.Queue()
        return self._parts

    def push(self, part: HandlerReply) -> None:
        """From any thread: one part, in order."""
        self.loop.call_soon_threadsafe(self._put, part)

    def _put(self, part: HandlerReply) -> None:
        if not self.first.done():
            self.first.set_result(part)
        else:
            self._queue().put_nowait(part)

    def pending(self) -> list[HandlerReply]:
        """The parts that arrived and were not read yet."""
        parts: list[HandlerReply] = []
        while self._parts is not None and not self._parts.empty():
            parts.append(self._parts.get_nowait())
        return parts

    async def next_part(self) -> HandlerReply:
        return await self._queue().get()
