"""The backend interface the core drives; torch-free so the core can import it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..types import TensorSpec


class Backend(Protocol):
    """One loaded model version, able to run a batch on any of its instances.

    ``infer`` is called from instance threads, never from the event loop, with the
    batch's inputs by name: numpy arrays (the batch dimension first when the model
    batches) or object arrays of ``bytes`` for BYTES. It returns outputs by name as
    numpy arrays, every one with the same first dimension as the inputs when batched.

    ``declared`` is False when ``inputs`` is only a guess (no [[inputs]] in config.toml and
    nothing the loader could read off the model file): the core then leaves checking the
    inputs to the model itself.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str
    device: str
    declared: bool

    def infer(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]: ...

    def explain(self, inputs: dict[str, Any], method: str, target: Any = None
                ) -> dict[str, Any]:
        """Attributions by input name, shaped like ``inputs`` (explanation threads).

        Raises:
            UnsupportedError: the backend cannot compute explanations (501).
        """
        ...

    def warmup(self) -> None: ...

    def close(self) -> None: ...


class PayloadBackend(Backend, Protocol):
    """A backend that takes whole requests rather than tensors (``opaque = True``):
    handler.py models. The scheduler hands it a batch of typed payloads
    (core.payloads.Payload) from an instance thread; it returns one answer per payload,
    in order (an exception instance fails that one request)."""

    opaque: bool

    def run_batch(self, payloads: list[Any], instance: int) -> list[Any]: ...

    def explain_payload(self, payload: Any, method: str, target: Any = None) -> Any: ...


# (version folder, model config, labels) -> Backend; raises ConfigError or BackendError.
BackendLoader = Callable[[Path, Any, dict[str, str]], Backend]
