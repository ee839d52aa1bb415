"""Batch policies: which queued requests share a model run, and how that run goes.

The scheduler (``core/scheduler.py``) owns the queue and the timing and knows nothing
of tensors; the instance worker (``core/instances.py``) runs a job through this module
(``run_isolated``). Every queued request carries the policy of its kind, which answers
two questions:

- ``key(request)`` (event loop): requests with equal keys may share one run (asked
  only of a policy that is not ``grouped``: a grouped request shares no run). The
  tensor key (``core.jobs.tensor_key``) lives with the queue's records, so forming
  batches on the loop never enters this module.
- ``run(requests, rows, instance)`` (instance thread): one answer per request, in
  order. An exception *instance* as an answer fails that request alone; raising fails
  the run, and ``run_isolated`` runs each request alone to find the culprit.

Kinds:

- ``TensorPolicy`` (tensor): a batched model's tensor requests. Same feature shape and
  dtype share a run; their rows are concatenated, the outputs checked for one row per
  row and sliced back. A request larger than max_batch_size is ``split`` into chunks.
- ``GroupedPolicy`` (grouped): a model that takes no batch dimension (max_batch_size
  0). Requests never merge; an idle instance takes its share of the queue in one
  thread hop and runs each alone (``Group``).
- ``OpaquePolicy`` (opaque): whole requests handed to a runner as one list:
  ``runner(payloads, instance) -> answers``. TorchServe-style requests travel this way:
  ``DynamicBatcher.infer`` under the runner's policy, made once (one call queues and
  waits: core.handler_requests), or ``submit_opaque`` for a bare future.

**Plug point for request-list runtimes** (the TorchServe handler runtime): give
``submit_opaque`` a runner; it gets the payloads of a whole batch, formed as tensor
batches are (up to max_batch_size requests within batch_delay_ms), and returns one
answer per payload. At max_batch_size 1 the runner still gets lists of one, but an idle
instance takes its share of the queue in one thread hop, as a ``Group`` does. A runtime
that turns payloads into tensors reuses the tensor policy as a stage behind its
preprocessing: ``run_rows`` (concatenate, run, check, slice) on payloads grouped by
``tensor_key``, as ``core.handlers.HandlerRunner`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol

import numpy as np

from ..errors import BackendError, FastServeError
from .jobs import tensor_key

Outputs = dict[str, Any]
Runner = Callable[[list[Any], int], list[Any]]


class BatchPolicy(Protocol):
    grouped: bool  # each request runs alone (the model takes no batch dimension)

    def key(self, request: Any) -> Hashable: ...  # (not asked when grouped: no key)

    def run(self, requests: list[Any], rows: list[int], instance: int) -> list[Any]: ...


def check_outputs(model: str, outputs: Any, rows: int | None = None,
                  unit: str = " rows") -> Outputs:
    """The backend's outputs, if they are a non-empty dict with ``rows`` rows each."""
    if not isinstance(outputs, dict) or not outputs:
        raise BackendError(f"model '{model}' returned no outputs")
    if rows is not None:
        for n, a in outputs.items():
            if getattr(a, "ndim", 0) < 1 or len(a) != rows:
                raise BackendError(
                    f"model '{model}' output '{n}' has shape {list(getattr(a, 'shape', ()))} "
                    f"for a batch of {rows}{unit}; batched models return one row per input row")
    return outputs


def run_rows(backend: Any, model: str, requests: list[dict[str, Any]], rows: list[int],
             instance: int, unit: str = " rows") -> list[Outputs]:
    """One model run over the requests' rows, concatenated; each request's rows back."""
    if len(requests) == 1:
        inputs = requests[0]
    else:
        # merged: (sum(rows), *feature_shape) per input -- the one copy batching costs
        inputs = {n: np.concatenate([r[n] for r in requests]) for n in requests[0]}
    outputs = check_outputs(model, backend.infer(inputs, instance), sum(rows), unit)
    results = []
    offset = 0
    if len(outputs) == 1:  # the usual one output: no dict comprehension per request
        [(name, out)] = outputs.items()
        for n_rows in rows:
            end = offset + n_rows
            results.append({name: out[offset:end]})
            offset = end
        return results
    for n_rows in rows:
        end = offset + n_rows
        results.append({n: a[offset:end] for n, a in outputs.items()})
        offset = end
    return results


class TensorPolicy:
    """tensor: a batched model's requests; rows of one feature shape share a run."""

    grouped = False
    key = staticmethod(tensor_key)

    def __init__(self, backend: Any, model: str) -> None:
        self.backend = backend
        self.model = model

    @staticmethod
    def split(inputs: dict[str, Any], rows: int, most: int) -> list[tuple[dict[str, Any], int]]:
        """A request of more than ``most`` rows, as chunks of at most ``most`` rows."""
        return [({n: a[start:start + most] for n, a in inputs.items()},
                 min(most, rows - start)) for start in range(0, rows, most)]

    @staticmethod
    def join(parts: list[Outputs]) -> Outputs:
        """The outputs of a split request's chunks, in order, as one answer."""
        return {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}

    def run(self, requests: list[dict[str, Any]], rows: list[int], instance: int
            ) -> list[Outputs]:
        return run_rows(self.backend, self.model, requests, rows, instance)


class GroupedPolicy:
    """grouped: a model without a batch dimension; each request is a model run."""

    grouped = True

    def __init__(self, backend: Any, model: str) -> None:
        self.backend = backend
        self.model = model

    def run(self, requests: list[dict[str, Any]], rows: list[int], instance: int
            ) -> list[Outputs]:
        if len(requests) == 1:  # a group's member: the common case
            return [check_outputs(self.model, self.backend.infer(requests[0], instance))]
        return [check_outputs(self.model, self.backend.infer(r, instance)) for r in requests]


class OpaquePolicy:
    """opaque: whole requests (payloads) to ``runner``, a batch at a time."""

    __slots__ = ("runner", "model", "grouped")

    def __init__(self, runner: Runner, model: str, grouped: bool) -> None:
        self.runner = runner
        self.model = model
        self.grouped = grouped

    def key(self, payload: Any) -> Hashable:
        return self  # payloads of one runner share a batch

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpaquePolicy) and other.runner == self.runner

    def __hash__(self) -> int:
        return hash(self.runner)

    def run(self, payloads: list[Any], rows: list[int], instance: int) -> list[Any]:
        answers = self.runner(payloads, instance)
        if not isinstance(answers, list) or len(answers) != len(payloads):
            # Not retried one by one: the whole batch gets the error (CONTRACT §4).
            got = len(answers) if isinstance(answers, list) else 0
            error = BackendError(f"model '{self.model}' gave {got} answers for a batch of "
                                 f"{len(payloads)} requests; expected one per request")
            return [error] * len(payloads)
        return answers


def run_isolated(policy: BatchPolicy, model: str, requests: list[Any], rows: list[int],
                 instance: int) -> list[Any]:
    """``policy.run``; if the run raises, each request alone, so only the culprit fails."""
    try:
        return policy.run(requests, rows, instance)
    except Exception as exc:
        if len(requests) == 1:
            return [as_error(model, exc)]
    results: list[Any] = []
    for request, n_rows in zip(requests, rows, strict=True):
        try:
            results.extend(policy.run([request], [n_rows], instance))
        except Exception as exc:
            results.append(as_error(model, exc))
    return results


def as_error(model: str, exc: Exception) -> FastServeError:
    """A model's exception as the error its request fails with (500 unless it says)."""
    if isinstance(exc, FastServeError):
        return exc
    err = BackendError(f"model '{model}' raised {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err
