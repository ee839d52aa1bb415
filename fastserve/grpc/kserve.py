"""KServe v2 ``inference.GRPCInferenceService`` with Triton's additions, as tritonclient.grpc
and perf_analyzer call it. Messages are tritonclient's generated ones (Triton's
``grpc_service.proto``, a superset of KServe's ``grpc_predict_v2.proto``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from ..core.control import ModelControl
from ..core.dataplane import DataPlane
from ..core.info import WholeRequest
from ..errors import UnsupportedError
from ..frontends._triton import TritonDocs
from ..frontends._triton_settings import TritonSettings
from ..frontends._v2 import classify
from . import wire
from .management import Management
from .raw_inputs import parse_infer_request
from .repository import RepositoryRpcs
from .services import Malformed, check
from .status import CallPolicy, code_of, model_of, unary
from .tensors import InferBody, encode_response
from .triton_extras import TritonExtras

MAX_STREAM_IN_FLIGHT = 1024  # requests of one stream running at once; more wait to be read


class InferenceService(RepositoryRpcs, TritonExtras):
    """One per port: on the inference port ``management`` refuses mutations."""

    SERIALIZED = frozenset({"ModelInfer", "ModelStreamInfer"})  # answer bytes, not messages
    # Large requests' tensors stay views of the received bytes (grpc/raw_inputs.py).
    PARSERS = {"ModelInfer": parse_infer_request, "ModelStreamInfer": parse_infer_request}

    def __init__(self, dataplane: DataPlane, control: ModelControl, policy: CallPolicy,
                 management: Management, mutable: bool, settings: TritonSettings) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self.policy = policy
        self.management = management
        self.mutable = mutable
        self.triton = TritonDocs(dataplane, control)

    # Health and metadata

    @unary(counted=False, public=True)
    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.dataplane.live())

    @unary(counted=False, public=True)
    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    @unary(counted=False)
    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(
            ready=self.dataplane.model_ready(request.name, request.version or None))

    @unary()
    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    @unary()
    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        doc = self.dataplane.model_metadata(request.name, request.version or None)
        doc.pop("error", None)
        return json_format.ParseDict(doc, pb.ModelMetadataResponse())

    @unary()
    async def ModelConfig(self, request: Any, context: Any) -> pb.ModelConfigResponse:
        doc = self.triton.config_doc(request.name, request.version or None)
        return pb.ModelConfigResponse(
            config=json_format.ParseDict(doc, mc.ModelConfig(), ignore_unknown_fields=True))

    @unary()
    async def ModelStatistics(self, request: Any, context: Any) -> pb.ModelStatisticsResponse:
        doc = self.triton.stats_doc(request.name or None, request.version or None)
        return json_format.ParseDict(doc, pb.ModelStatisticsResponse(),
                                     ignore_unknown_fields=True)

    # System shared memory (with --allow-shared-memory)

    @unary(counted=False)
    async def SystemSharedMemoryStatus(self, request: Any, context: Any
                                       ) -> pb.SystemSharedMemoryStatusResponse:
        rows = self.dataplane.shared_memory.status(request.name or None)
        return pb.SystemSharedMemoryStatusResponse(regions={
            r["name"]: pb.SystemSharedMemoryStatusResponse.RegionStatus(**r) for r in rows})

    @unary(counted=False)
    async def SystemSharedMemoryRegister(self, request: Any, context: Any
                                         ) -> pb.SystemSharedMemoryRegisterResponse:
        self.dataplane.shared_memory.register(request.name, request.key, request.offset,
                                              request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    @unary(counted=False)
    async def SystemSharedMemoryUnregister(self, request: Any, context: Any
                                           ) -> pb.SystemSharedMemoryUnregisterResponse:
        self.dataplane.shared_memory.unregister(request.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()

    # Inference

    @unary()
    async def ModelInfer(self, request: Any, context: Any) -> bytes:
        return await self.infer(request)

    async def infer(self, request: pb.ModelInferRequest) -> bytes:
        """The serialized ModelInferResponse (grpc/wire.py)."""
        check(request)
        body = InferBody(request, self.dataplane.shared_memory)
        # One call through the door: it resolves the model (404, 503), then decodes
        # ``body`` against it (a refusal counts as the model's failure), validates and
        # runs; encoded images (BYTES, image_classifier) are preprocessed behind it.
        response = await self.dataplane.infer_body(request.model_name,
                                                   request.model_version or None, body)
        if isinstance(response, WholeRequest):
            model = response.info.name
            raise UnsupportedError(
                f"model '{model}' is a TorchServe archive: its handler takes whole "
                "requests; call TorchServe's Predictions RPC (or POST /predictions/"
                f"{model})")
        info, options = body.info, body.options
        assert info is not None
        if options.classification:
            for name, k in options.classification.items():
                if name in response.outputs:
                    response.outputs[name] = classify(response.outputs[name], k, info.labels,
                                                      info.batched)
        return encode_response(response, options, info.outputs, self.dataplane.shared_memory)

    async def ModelStreamInfer(self, requests: Any, context: Any) -> Any:
        """Each request runs as it arrives (several at once); answers go back as they
        finish, an error as ``error_message`` on the stream, which stays open. A client
        that leaves cancels what it still had queued."""
        refused = self.policy.authorized(context)
        if refused is not None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
        answers: asyncio.Queue[bytes | None] = asyncio.Queue()
        running: set[asyncio.Task[Any]] = set()
        slots = asyncio.Semaphore(MAX_STREAM_IN_FLIGHT)

        async def answer(request: pb.ModelInferRequest) -> None:
            try:
                message = wire.stream_response(await self.infer(request))
                status = 200
            except Exception as exc:  # each request fails alone; the stream goes on
                _, text, status = code_of(exc)
                message = pb.ModelStreamInferResponse(error_message=text)
                if type(request) is not Malformed:
                    message.infer_response.CopyFrom(pb.ModelInferResponse(
                        model_name=request.model_name, model_version=request.model_version,
                        id=request.id))
                message = message.SerializeToString()
            finally:
                slots.release()
            if self.policy.count is not None:
                self.policy.count(*model_of(request), status)
            answers.put_nowait(message)

        async def read() -> None:
            async for request in requests:
                await slots.acquire()
                task = asyncio.create_task(answer(request))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.wait(list(running))
            answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                message = await answers.get()
                if message is None:
                    break
                yield message
            await reader  # a read error (the client broke the stream) surfaces here
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()

