"""Handlers: one TorchServe-style request (a /predictions body) in, one answer out.

A request travels as a ``Payload``: the body bytes as received (typed later, on the
instance thread, by ``decode_body``) or an already-decoded JSON value (a KServe v1
instance). The scheduler batches payloads like any other request; on the instance
thread a ``HandlerRunner`` decodes and preprocesses each one, runs the model once for
the whole batch and postprocesses each answer (DESIGN.md: handler pre/post processing
belongs to the backend stage, never to the event loop).

Handlers (config.toml ``handler``):
- ``tensor``, ``image_classifier``: ``core/builtin_handlers.py``; ``HandlerRunner`` puts
  their preprocessing as a stage in front of the tensor batch policy
  (``core/batching.py``).
- ``handler.py``: the backend runs the user's class (backends/custom.py); ``CustomRunner``
  only types each body, as TorchServe would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FastServeError
from .batching import check_outputs, run_rows
from .builtin_handlers import (
    ImageClassifierHandler,
    TensorHandler,
    make_handler,
    top_k,
)
from .jobs import tensor_key
from .model_config import ModelConfig
from .payloads import Payload, decode_body, parse_target
from .validation import validate_inputs

__all__ = ["CustomRunner", "HandlerRunner", "ImageClassifierHandler", "TensorHandler",
           "make_handler", "make_runner", "top_k"]


# Running a batch of payloads (instance threads)


class HandlerRunner:
    """Runs batches of payloads through a core handler and a tensor backend.

    ``run_batch`` is what the scheduler calls on an instance thread for opaque items;
    ``explain_payload`` what the explanation queue calls.
    """

    def __init__(self, handler: TensorHandler, backend: Any, config: ModelConfig) -> None:
        self.handler = handler
        self.backend = backend
        self.batched = config.batched
        self.model = config.name
        self.declared = backend.declared

    def inputs_of(self, payload: Payload) -> tuple[dict[str, np.ndarray], Any]:
        """Decode and preprocess one payload; also return a "target" the body carried."""
        value = payload.data
        if payload.content_type is not None:
            value = decode_body(value, payload.content_type)
        target = payload.extra.get("target")
        if isinstance(value, dict) and "target" in value:
            value = dict(value)
            target = value.pop("target")
        inputs = self.handler.preprocess(value)
        validate_inputs(self.backend.inputs, inputs, self.batched, strict=self.declared)
        return inputs, target

    def run_batch(self, payloads: list[Payload], instance: int) -> list[Any]:
        """One answer (or the exception that fails it) per payload, in order.

        The handler's preprocessing is a stage in front of the tensor policy: payloads
        whose inputs agree in all but the batch dimension run as one batch
        (``batching.run_rows``); a model without a batch dimension runs each alone.
        """
        results: list[Any] = [None] * len(payloads)
        groups: dict[Any, list[tuple[int, dict[str, np.ndarray]]]] = {}
        for i, payload in enumerate(payloads):
            try:
                inputs, _ = self.inputs_of(payload)
            except FastServeError as exc:  # a bad request fails alone
                results[i] = exc
                continue
            key = tensor_key(inputs) if self.batched else i
            groups.setdefault(key, []).append((i, inputs))
        for members in groups.values():
            if self.batched:
                outputs = run_rows(self.backend, self.model, [m[1] for m in members],
                                   [1] * len(members), instance, unit="")
            else:
                outputs = [check_outputs(self.model, self.backend.infer(members[0][1], instance))]
            for (i, _), answer in zip(members, outputs, strict=True):
                results[i] = self.handler.postprocess(answer)
        return results

    def explain_payload(self, payload: Payload, method: str, target: Any = None) -> Any:
        inputs, body_target = self.inputs_of(payload)
        chosen = parse_target(target if target is not None else body_target)
        return self.handler.explain_answer(self.backend.explain(inputs, method, chosen))


class CustomRunner:
    """handler.py models: type each body as TorchServe would, then the user's handler runs
    the whole batch in the backend (backends/custom.py)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @staticmethod
    def typed(payload: Payload) -> Payload:
        if payload.content_type is None:
            return payload
        value = decode_body(payload.data, payload.content_type, handler_py=True)
        return Payload(value, None, payload.name, payload.extra, payload.headers)

    def run_batch(self, payloads: list[Payload], instance: int) -> list[Any]:
        results: list[Any] = [None] * len(payloads)
        ready: list[tuple[int, Payload]] = []
        for i, payload in enumerate(payloads):
            try:
                ready.append((i, self.typed(payload)))
            except FastServeError as exc:  # a body that does not parse fails alone
                results[i] = exc
        if ready:
            answers = self.backend.run_batch([p for _, p in ready], instance)
            if not isinstance(answers, list) or len(answers) != len(ready):
                return answers  # the scheduler fails the batch with its count
            for (i, _), answer in zip(ready, answers, strict=True):
                results[i] = answer
        return results

    def explain_payload(self, payload: Payload, method: str, target: Any = None) -> Any:
        return self.backend.explain_payload(self.typed(payload), method, target)


def make_runner(config: ModelConfig, backend: Any, labels: dict[str, str]
                ) -> Any:
    """What runs a model's TorchServe-style requests: its handler over its backend."""
    if getattr(backend, "runs_requests", False):  # a TorchServe archive types its own
        return backend
    if getattr(backend, "opaque", False):
        return CustomRunner(backend)
    return HandlerRunner(make_handler(config, backend, labels), backend, config)
