"""The built-in handlers (config.toml ``handler``): a request instance -> model inputs,
model outputs -> the answer. Torch-free: numpy in, JSON-ready values out.

- ``tensor``: JSON nested list, ``{"data": ...}``, ``{"<input>": ...}``, .npy or raw tensor
  bytes -> the model's input(s); answer: the output as a nested list (several: by name).
- ``image_classifier``: JPEG/PNG -> core.image -> [C, H, W]; answer: the top-min(5,
  classes) ``{label: probability}`` after softmax, highest first.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import BackendError, InvalidInputError, UnsupportedError
from ..types import DataType, TensorSpec
from .image import preprocess_image
from .model_config import ModelConfig
from .payloads import b64decode
from .tensors import MAX_JSON_DEPTH, array_from_json, bf16_to_float, float_to_bf16

TOP_K = 5


class TensorHandler:
    """The default handler: the body is the model's input tensor(s), one instance."""

    def __init__(self, config: ModelConfig, inputs: tuple[TensorSpec, ...],
                 outputs: tuple[TensorSpec, ...], declared: bool = True) -> None:
        self.batched = config.batched
        self.inputs = inputs or (TensorSpec("input__0", DataType.FP32, (-1,)),)
        self.declared = declared
        self.out_specs = {s.name: s for s in outputs}
        self.by_name = {s.name: s for s in self.inputs}

    # Request -> inputs

    def preprocess(self, value: Any) -> dict[str, np.ndarray]:
        """One instance -> the model's inputs by name (with a batch dimension of 1 if batched)."""
        if isinstance(value, dict):
            names = set(value)
            if names and names <= set(self.by_name):
                if self.declared and len(names) != len(self.by_name):
                    missing = ", ".join(sorted(set(self.by_name) - names))
                    raise InvalidInputError(f"missing input(s) {missing}")
                return {n: self._batch(self._array(self.by_name[n], value[n])) for n in value}
            if "data" in value:
                return self.preprocess(value["data"])
            raise InvalidInputError(
                f"a JSON object body must be {{\"data\": ...}} or name the model's inputs "
                f"({', '.join(self.by_name)}); got keys {', '.join(sorted(names)) or 'none'}")
        if len(self.inputs) != 1:
            raise InvalidInputError(
                f"the model has {len(self.inputs)} inputs: send a JSON object naming each "
                f"({', '.join(self.by_name)})")
        spec = self.inputs[0]
        return {spec.name: self._batch(self._array(spec, value))}

    def _batch(self, arr: np.ndarray) -> np.ndarray:
        return arr[None] if self.batched else arr

    def _instance_shape(self, spec: TensorSpec) -> tuple[int, ...]:
        return spec.shape[1:] if self.batched else spec.shape

    def _array(self, spec: TensorSpec, value: Any) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return self._cast(spec, value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._raw_tensor(spec, value)
        if isinstance(value, str) and spec.datatype is not DataType.BYTES:
            raise InvalidInputError(
                f"input '{spec.name}' is {spec.datatype.wire}: send numbers (JSON), a .npy "
                "file or raw tensor bytes, not text")
        datatype = spec.datatype if self.declared else DataType.FP32
        return array_from_json(spec.name, value, datatype, _json_shape(value))

    def _cast(self, spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
        if not self.declared:
            return arr
        target: np.dtype[Any]
        if spec.datatype is DataType.BF16:
            if arr.dtype.kind == "f":
                return float_to_bf16(arr)
            target = np.dtype(np.uint16)
        elif spec.datatype is DataType.BYTES:
            raise InvalidInputError(f"input '{spec.name}' is BYTES: send JSON strings")
        else:
            target = np.dtype(bool) if spec.datatype is DataType.BOOL else np.dtype(
                spec.datatype.numpy)
        if arr.dtype == target:
            return arr
        if not np.can_cast(arr.dtype, target, "same_kind"):
            raise InvalidInputError(f"input '{spec.name}' is {spec.datatype.wire}; a .npy of "
                                    f"{arr.dtype} cannot be converted to it safely")
        return arr.astype(target)

    def _raw_tensor(self, spec: TensorSpec, data: Any) -> np.ndarray:
        """Raw little-endian tensor bytes for the one input (its shape, at most one -1)."""
        if spec.datatype is DataType.BYTES:
            arr = np.empty(1, dtype=object)
            arr[0] = bytes(data)
            return arr.reshape(()) if not self._instance_shape(spec) else arr
        shape = list(self._instance_shape(spec)) if self.declared else [-1]
        if shape.count(-1) > 1:
            raise InvalidInputError(
                f"input '{spec.name}' has shape {list(spec.shape)}: send JSON or .npy (raw "
                "bytes fit a shape with at most one variable dimension)")
        itemsize = spec.datatype.itemsize
        known = math.prod(d for d in shape if d != -1) * itemsize
        size = len(data)
        if (-1 in shape and (known == 0 or size % known)) or (-1 not in shape and size != known):
            raise InvalidInputError(
                f"a raw body of {size} bytes does not fit input '{spec.name}' "
                f"({spec.datatype.wire}, shape {list(self._instance_shape(spec))} per instance)"
                "; send JSON or .npy, or a body of matching length")
        if -1 in shape:
            shape[shape.index(-1)] = size // known
        dtype = np.dtype(bool) if spec.datatype is DataType.BOOL else np.dtype(
            spec.datatype.numpy)
        return np.frombuffer(data, dtype=dtype).reshape(shape)

    # Outputs -> answer

    def rows(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One instance's outputs without the batch dimension the handler added."""
        return {n: a[0] for n, a in outputs.items()} if self.batched else outputs

    def postprocess(self, outputs: dict[str, np.ndarray]) -> Any:
        """The output as a nested list (several outputs: {name: list})."""
        values = {n: self._json(n, a) for n, a in self.rows(outputs).items()}
        if len(values) == 1:
            return next(iter(values.values()))
        return values

    def _json(self, name: str, arr: Any) -> Any:
        arr = np.asarray(arr)
        spec = self.out_specs.get(name)
        if spec is not None and spec.datatype is DataType.BF16 and arr.dtype == np.uint16:
            arr = bf16_to_float(arr)
        if arr.dtype == object:
            return [_text(v) for v in arr.ravel()] if arr.ndim else _text(arr.item())
        if arr.ndim == 0:
            return arr.item()
        return np.ascontiguousarray(arr)

    def explain_answer(self, attributions: dict[str, np.ndarray]) -> Any:
        """Attributions shaped like the input instance (without the batch dimension)."""
        values = {n: np.ascontiguousarray(a) for n, a in self.rows(attributions).items()}
        if len(values) == 1:
            return next(iter(values.values()))
        return values


class ImageClassifierHandler(TensorHandler):
    """JPEG/PNG in ([image] preprocessing), the top-k {label: probability} map out."""

    def __init__(self, config: ModelConfig, inputs: tuple[TensorSpec, ...],
                 outputs: tuple[TensorSpec, ...], labels: dict[str, str],
                 declared: bool = True) -> None:
        super().__init__(config, inputs, outputs, declared)
        if len(self.inputs) != 1:
            raise UnsupportedError(
                f"an image_classifier model takes one input; this one has {len(self.inputs)} "
                f"({', '.join(self.by_name)})")
        self.spec = self.inputs[0]
        self.image = config.image
        self.labels = labels
        # The preprocessed image is C x H x W; the model gets N x C x H x W unless it
        # does not batch and declares a 3-dimensional input.
        self.add_batch = self.batched or not declared or len(self.spec.shape) != 3

    def preprocess(self, value: Any) -> dict[str, np.ndarray]:
        return {self.spec.name: self._image(value)}

    def _image(self, value: Any) -> np.ndarray:
        if isinstance(value, (bytes, bytearray, memoryview)):
            arr = preprocess_image(value, self.image)
        elif isinstance(value, str):
            arr = preprocess_image(b64decode(value, "image string"), self.image)
        elif isinstance(value, dict):
            for key in ("data", "b64", "body", self.spec.name):
                if key in value:
                    return self._image(value[key])
            raise InvalidInputError(
                "a JSON object body for an image model must be {\"data\": \"<base64 image>\"} "
                f"or {{\"b64\": ...}}; got keys {', '.join(sorted(value)) or 'none'}")
        else:
            # An already preprocessed C x H x W tensor (TorchServe's vision handler too).
            if isinstance(value, np.ndarray):
                arr = value.astype(np.float32, copy=False)
            else:
                arr = array_from_json(self.spec.name, value, DataType.FP32, _json_shape(value))
        if self.declared and self.spec.datatype in (DataType.FP16, DataType.FP64):
            arr = arr.astype(self.spec.datatype.numpy)
        return arr[None] if self.add_batch else arr

    def rows(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: a[0] for n, a in outputs.items()} if self.add_batch else outputs

    def postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        logits = next(iter(self.rows(outputs).values()))
        return top_k(np.asarray(logits), self.labels)


def top_k(logits: np.ndarray, labels: dict[str, str], k: int = TOP_K) -> dict[str, float]:
    """Softmax over the classes, then the k most probable as {label: probability}, highest
    first (ties: lower class index first); label = labels[str(i)], else str(i)."""
    x = logits.astype(np.float64).ravel()
    if x.size == 0:
        raise BackendError("the model returned no classes to rank")
    x = x - x.max()
    p = np.exp(x)
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[: min(k, p.size)]
    return {labels.get(str(int(i)), str(int(i))): float(p[i]) for i in order}


def _json_shape(value: Any) -> tuple[int, ...]:
    shape = []
    depth = 0
    while isinstance(value, list):
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise InvalidInputError(f"the body is nested deeper than {MAX_JSON_DEPTH}")
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def make_handler(config: ModelConfig, backend: Any, labels: dict[str, str]) -> TensorHandler:
    declared = backend.declared
    if config.handler == "image_classifier":
        return ImageClassifierHandler(config, backend.inputs, backend.outputs, labels, declared)
    return TensorHandler(config, backend.inputs, backend.outputs, declared)
