"""What the doors hand out: plain values about models, never a backend or a batcher.

The front-ends (HTTP, gRPC) read these; only the core holds the live objects behind them,
so a front-end cannot run a model, or change one, except through ``DataPlane`` and
``ModelControl``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..types import InferRequest, ReplyStream, TensorSpec

if TYPE_CHECKING:
    from .payloads import Payload

# A version's state, as the repository names it.
LOADING, READY, FAILED, UNLOADING = "LOADING", "READY", "FAILED", "UNLOADING"
STATES = (LOADING, READY, FAILED, UNLOADING)
# ModelInfo.handler kinds whose models take tensors; the others take whole requests
# (handler.py, a TorchServe archive's handler).
TENSOR_HANDLERS = frozenset({"tensor", "image_classifier"})


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One version of a model as the data plane serves it.

    ``handler`` is the kind of request handling (config.toml ``handler``): "tensor",
    "image_classifier" or "handler.py". ``declared`` is False when the model's inputs are
    not known up front (no [[inputs]] and nothing the loader could read off the file), so
    inputs are checked by the model itself. ``versions`` are every version of the model,
    ascending, at the time the value was made.
    """

    name: str
    version: str
    state: str
    error: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    declared: bool
    handler: str
    platform: str
    batched: bool
    labels: dict[str, str] = field(default_factory=dict)
    versions: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.state == READY


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One version's place in its model: state, why it failed, whether it is the default."""

    name: str
    version: str
    state: str
    error: str
    default: bool
    loaded_at: float = 0.0  # time.time() when it became READY

    @property
    def ready(self) -> bool:
        return self.state == READY


@dataclass(frozen=True, slots=True)
class VersionDetail:
    """What the management API describes of a version (TorchServe's describe)."""

    name: str
    version: str
    state: str
    error: str
    default: bool
    loaded_at: float
    folder: str  # its folder's (or archive's) name inside DIR
    versions: tuple[str, ...]
    instances: int
    device: str
    platform: str
    max_batch_size: int
    batch_delay_ms: float
    max_queue_size: int
    queue_depth: int


@dataclass(frozen=True, slots=True)
class VersionStats:
    """A version's statistics record (core.stats.ModelStats) and the time its backend spent
    converting tensors in and out (torch: per instance), for Triton's statistics."""

    name: str
    version: str
    stats: Any
    input_ns: int = 0
    output_ns: int = 0


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The outcome of loading a model: its versions that are READY, and those that failed."""

    name: str
    ready: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (version, error)
    error: str  # the model's own error (bad config.toml), when no version could start
    instances: int


@dataclass(frozen=True, slots=True)
class VersionChange:
    """A version changed state (on the event loop). ``registered`` is False once it left
    the repository. ``stats`` is its statistics record, where a metrics observer hooks in."""

    name: str
    version: str
    state: str
    registered: bool
    queue_depth: int
    stats: Any


@dataclass(frozen=True, slots=True)
class WholeRequest:
    """The door's answer when the model's handler takes the request whole, undecoded (a
    TorchServe archive's): the front-end hands it the body, as TorchServe routes it."""

    info: ModelInfo


@dataclass(frozen=True, slots=True)
class HandlerCall:
    """A TorchServe archive's handler at work on one whole request (/predictions): its
    answer to come (a one-item list), the parts it streams meanwhile, and the model's
    responseTimeout (``timeout_ms``, 0 for none)."""

    model: str
    timeout_ms: float
    stream: ReplyStream
    answer: asyncio.Future[list[Any]]


class TensorBody(Protocol):
    """A tensor API's request body (v2), decoded by its front-end when the data plane
    asks: once the model is known (an unknown model is a 404 whatever the body) and takes
    tensors. What ``tensors`` refuses (InvalidInputError) counts as the model's failure."""

    def tensors(self, info: ModelInfo) -> InferRequest: ...


class CheckedBody(TensorBody, Protocol):
    """A body with checks of its own before ``tensors``: their 400s are not the model's
    failures (TF Serving's :predict, :classify and :regress, as they count)."""

    def check(self, info: ModelInfo) -> None: ...


class InstancesBody(CheckedBody, Protocol):
    """A :predict body (TF Serving, KServe v1): row instances or named columns."""

    def instances(self) -> Any:
        """The row instances, for a model whose handler takes them one by one."""


class PayloadsBody(Protocol):
    """A TorchServe-style request (/explanations, KServe v1 :explain), read by its
    front-end when the data plane asks: once the model is known and READY (404, 503
    whatever the body). What it refuses (400) is not the model's failure."""

    def payloads(self, info: ModelInfo) -> list[Payload]:
        """The request's instances, each one request for the model's handler."""


class PredictionsBody(PayloadsBody, Protocol):
    """A /predictions request: its instances, or, for a TorchServe archive's handler, the
    one request as TorchServe hands it to its worker."""

    def whole(self) -> Payload: ...
