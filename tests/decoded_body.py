"""An InferRequest through the data plane's tensor door (``DataPlane.infer_body``), as a
front-end's body that is decoded already: the core tests' way in without a protocol."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastserve.types import InferRequest


class Decoded:
    """A TensorBody whose tensors are already decoded."""

    def __init__(self, request: InferRequest) -> None:
        self.request = request

    def tensors(self, info: Any) -> InferRequest:
        return self.request


def infer(plane: Any, request: InferRequest) -> Awaitable[Any]:
    """``plane.infer_body`` of ``request``: its model, version and inputs."""
    return plane.infer_body(request.model, request.version, Decoded(request))
