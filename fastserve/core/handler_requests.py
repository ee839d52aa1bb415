"""TorchServe-style requests: a whole body (or a KServe v1 instance) through the model's
handler, batched by the scheduler like every other request, and Captum explanations.

The half of the data plane's door (``DataPlane`` inherits it) that tensor requests do
not use; its reason to change is TorchServe's handler semantics.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from ..errors import FastServeError, InvalidInputError, QueueFullError
from ..types import ReplyStream
from .batching import OpaquePolicy
from .explain import ExplainQueue
from .handlers import make_runner
from .info import HandlerCall
from .model_status import ModelStatus
from .payloads import Payload, kserve_payload, reply_value
from .repository import ModelRepository, ModelVersion


class HandlerRequests(ModelStatus):
    def __init__(self, repository: ModelRepository, extensions: list[str] | None = None
                 ) -> None:
        super().__init__(repository, extensions)
        # Each loaded version's handler runner, and the explanation threads (outside the
        # batchers). NOTE: keyed by the version's batcher, not its backend: a runner holds
        # its backend, and a value that holds its own key keeps it (the model's memory)
        # alive for good after an unload.
        self._runners: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        # ... and its batch policy, made once: a request is queued with one call.
        self._policies: weakref.WeakKeyDictionary[Any, OpaquePolicy] = (
            weakref.WeakKeyDictionary())
        self.explainer = ExplainQueue()

    def _runner(self, target: ModelVersion) -> Any:
        """The handler runner of a READY version (core.handlers.make_runner), made once."""
        runner = self._runners.get(target.batcher)
        if runner is None:
            entry = self.repository.models[target.name]
            assert entry.config is not None
            runner = make_runner(entry.config, target.backend, entry.labels)
            self._runners[target.batcher] = runner
        return runner

    def _policy(self, target: ModelVersion) -> OpaquePolicy:
        """The opaque batch policy of a READY version's handler runner, made once."""
        policy = self._policies.get(target.batcher)
        if policy is None:
            config = self.repository.models[target.name].config
            assert config is not None
            policy = OpaquePolicy(self._runner(target).run_batch, target.name,
                                  not config.batched)
            self._policies[target.batcher] = policy
        return policy

    async def predict(self, name: str, version: str | None, payloads: list[Payload]
                      ) -> list[Any]:
        """Each payload as one request through the model's handler, batched by the
        scheduler like every other request; the answers in order. The first failure
        fails the whole call (one bad multipart part makes the request 400)."""
        if not payloads:
            raise InvalidInputError("the request has no body to run")
        return await self._handled(self._ready(name, version), payloads)

    def archive_call(self, name: str, version: str | None, payload: Payload) -> HandlerCall:
        """A request the door handed back whole (WholeRequest: v2, TF Serving) started on
        the archive's handler of the READY version (404 unknown, 503 not ready)."""
        return self._started(self._ready(name, version), payload)

    def _started(self, target: ModelVersion, payload: Payload) -> HandlerCall:
        """A TorchServe archive's handler at work on one whole request, under way: the
        parts it streams go to the call's stream as they come."""
        loop = asyncio.get_running_loop()
        stream = payload.stream = ReplyStream(loop)
        config = self.repository.models[target.name].config
        assert config is not None
        return HandlerCall(target.name, config.timeout_ms, stream,
                           loop.create_task(self._handled(target, [payload])))

    async def _handled(self, target: ModelVersion, payloads: list[Payload]) -> list[Any]:
        """``predict`` on the READY version ``target``."""
        batcher = target.batcher
        assert batcher is not None
        policy = self._policy(target)
        start = time.perf_counter_ns()
        if len(payloads) == 1:  # the usual one body: one call queues it and waits
            try:
                results = [await batcher.infer(payloads[0], 1, policy)]
            except FastServeError:
                target.stats.fail_ns += time.perf_counter_ns() - start
                raise
            target.stats.success_ns += time.perf_counter_ns() - start
            return results
        if batcher.queue_depth + len(payloads) > batcher.max_queue:
            # Every part queued, or none: not some, cancelled again (counted as clients
            # gone) but holding queue places until an instance frees.
            raise QueueFullError(
                f"model '{target.name}' version {target.version} has {batcher.queue_depth} "
                f"requests waiting and this body has {len(payloads)} parts "
                "(max_queue_size); retry later")
        futures: list[asyncio.Future[Any]] = []
        try:  # (refused as a whole: draining or broken)
            for payload in payloads:
                futures.append(batcher.submit(payload, 1, policy))
        except FastServeError:
            for future in futures:
                future.cancel()
            raise
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                target.stats.fail_ns += time.perf_counter_ns() - start
                raise result
        target.stats.success_ns += time.perf_counter_ns() - start
        return results

    async def predict_handler(self, name: str, version: str | None, instances: list[Any]
                              ) -> list[Any]:
        """KServe v1 envelope (TorchServe's): each instance — {"data": <b64>}, {"b64": ...}
        or a JSON value — goes through the handler like one /predictions body."""
        payloads = [kserve_payload(v, self._binary_data(name)) for v in instances]
        return [reply_value(a) for a in await self.predict(name, version, payloads)]

    async def _explained(self, found: ModelVersion, payloads: list[Payload]) -> list[Any]:
        """Captum attributions of each payload on the READY version ``found``, in order,
        shaped like the model input (no batch dimension), on the explanation threads:
        never batched, a few at a time."""
        config = self.repository.models[found.name].config
        assert config is not None
        run = self._runner(found).explain_payload
        if len(payloads) == 1:
            return [await self.explainer.run(run, payloads[0], config.explainer)]
        return list(await asyncio.gather(
            *(self.explainer.run(run, p, config.explainer) for p in payloads)))

    def _binary_data(self, name: str) -> bool:
        # A string under "data" is a base64 image or body for image and handler.py models.
        return self.config(name).handler != "tensor"
