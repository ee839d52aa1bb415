"""The one door the front-ends use: health, metadata and inference, protocol-free.

As MLServer's DataPlane: every API translates its wire format into InferRequest and
back; batching, versions, errors and statistics are written once, here and below.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from ..errors import FastServeError, InvalidInputError, ModelNotReadyError, UnsupportedError
from ..types import InferRequest, InferResponse
from . import ts_store
from .handler_requests import HandlerRequests
from .image_stage import ImageStage, has_images
from .info import (
    CheckedBody,
    HandlerCall,
    InstancesBody,
    ModelInfo,
    PayloadsBody,
    PredictionsBody,
    TensorBody,
    WholeRequest,
)
from .repository import ModelRepository, ModelVersion, State
from .shm import SharedMemoryRegistry
from .validation import validate_inputs


class DataPlane(HandlerRequests):
    def __init__(self, repository: ModelRepository, extensions: list[str] | None = None,
                 shared_memory: SharedMemoryRegistry | None = None) -> None:
        super().__init__(repository, extensions)
        self.shared_memory = shared_memory or SharedMemoryRegistry(enabled=False)
        # Per loaded backend: what the front-ends see of it, and its v2 image stage.
        self._infos: weakref.WeakKeyDictionary[Any, ModelInfo] = weakref.WeakKeyDictionary()
        self._stages: weakref.WeakKeyDictionary[Any, ImageStage] = weakref.WeakKeyDictionary()

    def info(self, name: str, version: str | None = None) -> ModelInfo:
        """The named version, or the default one, in whatever state it is (404/503)."""
        found = self.repository.version(name, version)
        if found.ready:
            return self._serving(found)
        entry = self.repository.entry(name)
        inputs, outputs = self.specs(name, found.version)
        config = entry.config
        return ModelInfo(found.name, found.version, found.state.value, found.error, inputs,
                         outputs, True, config.handler if config else "tensor",
                         self.platform(name, found.version),
                         config.batched if config else False, entry.labels,
                         tuple(v.version for v in entry.sorted_versions()))

    # Inference

    def _serving(self, target: ModelVersion) -> ModelInfo:
        # NOTE: a READY version's backend, config and labels never change (a reload makes a
        # new version), so its ModelInfo is made once, off the request path.
        backend = target.backend
        info = self._infos.get(backend)
        if info is None:
            entry = self.repository.models[target.name]
            config = entry.config
            assert config is not None and backend is not None
            info = ModelInfo(target.name, target.version, target.state.value, target.error,
                             backend.inputs, backend.outputs, backend.declared, config.handler,
                             backend.platform, config.batched, entry.labels,
                             tuple(v.version for v in entry.sorted_versions()))
            self._infos[backend] = info
        return info

    async def infer_body(self, name: str, version: str | None, body: TensorBody
                         ) -> InferResponse | WholeRequest:
        """One tensor API request (v2), the whole way through the door.

        The READY version it names (404 unknown, 503 not ready), then by the model's
        handler: an archive's takes the request whole (WholeRequest); a handler.py
        answers on /predictions only (501); else ``body`` decodes against the model's
        specs and the request runs.
        """
        target = self._ready(name, version)
        info = self._serving(target)
        if info.handler == ts_store.HANDLER:
            return WholeRequest(info)
        if info.handler == "handler.py":
            raise _handler_only(name)
        return await self._run(target, info, self._decoded(target, info, body))

    async def predict_instances(self, name: str, version: str | None, body: InstancesBody
                                ) -> InferResponse | list[Any] | WholeRequest:
        """One :predict request (TF Serving, KServe v1), the whole way through the door.

        A tensor model runs the decoded tensors (an InferResponse). Any other handler
        takes the row instances one by one (their answers, in order), except an archive's
        under a service_envelope, which takes the request whole (WholeRequest).
        """
        target = self._ready(name, version)
        info = self._serving(target)
        if self.service_envelope and info.handler == ts_store.HANDLER:
            return WholeRequest(info)
        body.check(info)
        if info.handler != "tensor":
            instances = body.instances()
            if not isinstance(instances, list) or not instances:
                raise InvalidInputError(
                    f"model '{name}' uses the {info.handler} handler: send a non-empty "
                    "'instances' list, one item per input (e.g. {\"b64\": \"<base64 image>\"})")
            return await self.predict_handler(name, info.version, instances)
        return await self._run(target, info, self._decoded(target, info, body))

    async def infer_tensors(self, name: str, version: str | None, body: CheckedBody,
                            api: str) -> InferResponse:
        """One request of an API that only tensor models serve (``api``, e.g. TF Serving's
        ":classify"): 501 for any other handler; else checked and run as decoded."""
        target = self._ready(name, version)
        info = self._serving(target)
        if info.handler != "tensor":
            raise UnsupportedError(f"model '{name}' uses the {info.handler} handler; {api} "
                                   "needs a tensor model")
        body.check(info)
        return await self._run(target, info, self._decoded(target, info, body))

    async def predictions(self, name: str, version: str | None, body: PredictionsBody
                          ) -> list[Any] | HandlerCall:
        """One TorchServe /predictions request, the whole way through the door.

        The READY version it names (404 unknown, 503 not ready), then by the model's
        handler: an archive's takes the request whole, as TorchServe hands it to its
        worker, and may stream (a HandlerCall, under way); any other takes each instance
        of ``body`` (a multipart body's parts) as one request (their answers, in order).
        """
        target = self._ready(name, version)
        info = self._serving(target)
        if info.handler == ts_store.HANDLER:
            return self._started(target, body.whole())
        return await self._handled(target, body.payloads(info))

    async def explanations(self, name: str, version: str | None, body: PayloadsBody
                           ) -> list[Any]:
        """Captum attributions of each instance of one request (/explanations, KServe v1
        :explain), in order, once the READY version is known (404, 503)."""
        target = self._ready(name, version)
        return await self._explained(target, body.payloads(self._serving(target)))

    @staticmethod
    def _decoded(target: ModelVersion, info: ModelInfo, body: TensorBody) -> InferRequest:
        try:
            return body.tensors(info)
        except InvalidInputError:
            target.stats.fail += 1  # a bad request counts as a failure (as Triton)
            raise

    async def _run(self, target: ModelVersion, info: ModelInfo, request: InferRequest
                   ) -> InferResponse:
        """Validate ``request`` against the model and run it.

        Image models take encoded images as BYTES inputs: those are decoded and
        preprocessed beside the instance thread, before the model run (core.image_stage).
        """
        backend, batcher = target.backend, target.batcher
        assert backend is not None and batcher is not None
        # Encoded images are checked with their preprocessing, off the event loop.
        stage = (self._image_stage(target) if info.handler == "image_classifier"
                 and has_images(request.inputs) else None)
        try:
            if stage is None:
                rows = validate_inputs(backend.inputs, request.inputs, info.batched,
                                       strict=backend.declared)
            else:  # a batch of N images is N rows
                rows = stage.policy.rows(request.inputs)
            if request.outputs is not None:
                known = {s.name for s in backend.outputs}
                for name in request.outputs:
                    if name not in known and known:
                        raise InvalidInputError(f"unknown output '{name}'; the model's outputs "
                                                f"are {', '.join(sorted(known))}")
        except InvalidInputError:
            self._refused(target)
            raise
        start = time.perf_counter_ns()
        try:
            outputs = await batcher.infer(request.inputs, rows,
                                           None if stage is None else stage.policy)
        except FastServeError:
            target.stats.fail_ns += time.perf_counter_ns() - start
            raise
        target.stats.success_ns += time.perf_counter_ns() - start
        if request.outputs is not None:
            outputs = {n: outputs[n] for n in request.outputs if n in outputs}
        return InferResponse(target.name, target.version, outputs, request.id)

    def _image_stage(self, target: ModelVersion) -> ImageStage:
        stage = self._stages.get(target.batcher)  # (not its backend: see _runners)
        if stage is None:
            config = self.repository.models[target.name].config
            assert config is not None
            stage = self._stages[target.batcher] = ImageStage(target.backend, config)
        return stage

    # Statistics

    @staticmethod
    def _refused(target: ModelVersion) -> None:
        target.stats.fail += 1

    # Shutdown

    def start_draining(self) -> None:
        self.draining = True

    async def drain(self) -> None:
        for version in self.repository.all_versions():
            if version.batcher is not None:
                await version.batcher.drain()

    def fail_pending(self) -> None:
        error = ModelNotReadyError("the server is shutting down; the request was not run")
        for version in self.repository.all_versions():
            if version.batcher is not None:
                version.batcher.fail_pending(error)

    def close(self) -> None:
        self.explainer.close()
        self.shared_memory.close()
        for version in self.repository.all_versions():
            if version.batcher is not None:
                version.batcher.close()
            if version.state is State.READY and version.backend is not None:
                version.backend.close()


def _handler_only(name: str) -> UnsupportedError:
    return UnsupportedError(f"model '{name}' has a custom handler.py; it answers on "
                            "/predictions/{model} (TorchServe API), not on the v2 tensor API")
