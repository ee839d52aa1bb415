"""v2 tensor requests for image_classifier models whose BYTES inputs are encoded images
(as OpenVINO Model Server takes them): decoded and preprocessed off the event loop, on a
SCHED_IDLE thread beside the instance thread (core/background.py says why), and run on
the instance thread (DESIGN: handler preprocessing is a stage in front of the model run).

A request of N images is N rows (``ImagePolicy``): batches form by images, as Triton
counts them (inference_count, batch statistics), and a request of more than
max_batch_size images is split into chunks, as a tensor request is. The scheduler hands
``run_batch`` the input dicts of a whole batch of such requests; each request fails alone
(a bad image is its own 400), the others share one model run.
"""

from __future__ import annotations

import os
import sys
import threading
from functools import partial
from typing import Any

from ..errors import FastServeError, InvalidInputError
from .background import Background
from .batching import Outputs, TensorPolicy, check_outputs, run_rows
from .image import load_pillow, preprocess_images
from .jobs import tensor_key
from .model_config import ImageConfig, ModelConfig
from .validation import validate_inputs

# Niceness an instance thread takes on with its first image job (Linux: per thread).
# Its image work runs on a SCHED_IDLE background thread (core/background.py); the instance
# thread takes over what is left of a step that found no idle CPU for a while, and does so
# at this lowered priority, not at the event loop's. The thread stays lowered: raising a
# priority back needs CAP_SYS_NICE.
IMAGE_NICENESS = 10
_thread = threading.local()


def lower_priority() -> None:
    """Lower this thread's OS priority by IMAGE_NICENESS, once (Linux only)."""
    if getattr(_thread, "lowered", False) or sys.platform != "linux":
        return
    _thread.lowered = True
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid)
                       + IMAGE_NICENESS)
    except OSError:  # pragma: no cover - a sandbox that refuses it: run as it is
        pass


def decode(inputs: dict[str, Any], image: ImageConfig) -> dict[str, Any]:
    """The request's inputs with each BYTES input as an N x C x H x W float32 batch."""
    try:
        return {name: preprocess_images(list(arr.ravel()), image)
                if arr.dtype == object else arr for name, arr in inputs.items()}
    except InvalidInputError as exc:
        first = getattr(inputs, "first", 0)
        if not first or not hasattr(exc, "index"):
            raise
        # A chunk of a split request: the image's place in the whole request.
        raise InvalidInputError(f"image {first + exc.index}: {exc.reason}") from None


def has_images(inputs: dict[str, Any]) -> bool:
    """True when some input holds BYTES elements (encoded images, for this kind of model)."""
    return any(arr.dtype == object for arr in inputs.values())


class ImageStage:
    """Preprocess, merge and run v2 image requests of one backend (instance threads)."""

    def __init__(self, backend: Any, config: ModelConfig) -> None:
        self.backend = backend
        self.model = config.name
        self.batched = config.batched
        self.image = config.image
        self.policy = ImagePolicy(self)
        self.background: dict[int, Background] = {}  # by instance

    def run_batch(self, requests: list[dict[str, Any]], instance: int) -> list[Any]:
        """Outputs by name (or the error that fails it) per request, in order. The images
        are decoded on the instance's background thread, the model runs here."""
        background = self.background.get(instance)
        if background is None:
            load_pillow()  # here: a starved background thread must not hold the import
            background = self.background[instance] = Background()
        results: list[Any] = [None] * len(requests)
        groups: dict[Any, list[tuple[int, dict[str, Any], int]]] = {}
        # A unit holds the request and the [image] table only: a background thread still
        # inside one after an unload does not keep the model alive.
        decoded = background.run([partial(decode, inputs, self.image) for inputs in requests])
        for i, prepared in enumerate(decoded):
            try:
                if isinstance(prepared, BaseException):
                    raise prepared  # what decoding raised, raised here
                rows = validate_inputs(self.backend.inputs, prepared, self.batched,
                                       strict=self.backend.declared)
            except FastServeError as exc:  # a bad image fails its own request only
                results[i] = exc
                continue
            key = tensor_key(prepared) if self.batched else i
            groups.setdefault(key, []).append((i, prepared, rows))
        for members in groups.values():
            if self.batched:
                outputs = run_rows(self.backend, self.model, [m[1] for m in members],
                                   [m[2] for m in members], instance)
            else:
                outputs = [check_outputs(self.model, self.backend.infer(members[0][1],
                                                                         instance))]
            for (i, _, _), answer in zip(members, outputs, strict=True):
                results[i] = answer
        return results


class _Chunk(dict[str, Any]):
    """The inputs of one chunk of a split image request, and where its images start."""

    __slots__ = ("first",)

    def __init__(self, first: int, inputs: dict[str, Any]) -> None:
        super().__init__(inputs)
        self.first = first


class ImagePolicy:
    """image: the batch policy of v2 image requests (core.batching's protocol); their
    images are decoded and preprocessed in ``run``, beside the instance thread."""

    join = staticmethod(TensorPolicy.join)

    def __init__(self, stage: ImageStage) -> None:
        self.stage = stage
        self.grouped = not stage.batched

    def key(self, inputs: dict[str, Any]) -> ImagePolicy:
        return self  # image requests share runs with each other, never with tensors

    @staticmethod
    def rows(inputs: dict[str, Any]) -> int:
        """The request's images (its rows), where every input has that many rows; else 1
        (a request the model refuses once its images are decoded)."""
        images = next(arr.size for arr in inputs.values() if arr.dtype == object)
        counts = {arr.shape[0] if arr.ndim else -1 for arr in inputs.values()}
        return images if counts == {images} else 1

    @staticmethod
    def split(inputs: dict[str, Any], rows: int, most: int) -> list[tuple[dict[str, Any], int]]:
        """A request of more than ``most`` images, as chunks of at most ``most`` images."""
        return [(_Chunk(start, {n: a[start:start + most] for n, a in inputs.items()}),
                 min(most, rows - start)) for start in range(0, rows, most)]

    def run(self, requests: list[dict[str, Any]], rows: list[int], instance: int
            ) -> list[Outputs | FastServeError]:
        lower_priority()
        return self.stage.run_batch(requests, instance)
