"""``--grpc-management-port`` of a ``--workers N`` parent, which has no models of its own.

Changes go through the parent's management API, which applies each to every worker or
refuses it (workers.py): repository load/unload/index, TorchServe's
ManagementAPIsService, log and trace settings. Every other call (metadata, inference,
health, ...) is relayed to the workers' shared gRPC inference port with the inference
token, so the port answers as a single process's management port does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from ..http.messages import Response
from .management import Management
from .repository import RepositoryRpcs
from .server import KSERVE, TS_MANAGEMENT, bind, server_options
from .services import Malformed, add_service
from .status import CallPolicy
from .torchserve import TorchServeManagement
from .triton_extras import TritonExtras

HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
PUBLIC = frozenset({"ServerLive", "ServerReady"})  # no token, as over HTTP (status.unary)
Apply = Callable[[str, str, str, bytes], Awaitable[Response]]


class ParentInferenceService(RepositoryRpcs, TritonExtras):
    """The parent's own share of GRPCInferenceService; the rest is relayed."""

    SERIALIZED: frozenset[str] = frozenset()

    def __init__(self, management: Management, policy: CallPolicy) -> None:
        self.management = management
        self.policy = policy
        self.mutable = True

    async def log_settings(self, changes: dict[str, Any] | None) -> dict[str, Any]:
        if changes is None:
            return await self.management.call("GET", "/v2/logging")
        return await self.management.call("POST", "/v2/logging", changes)

    async def trace_settings(self, model: str | None, changes: dict[str, list[str]] | None
                             ) -> dict[str, list[str]]:
        path = "/v2/trace/setting"
        if model:
            path = f"/v2/models/{self.management.segment(model)}/trace/setting"
        doc = await self.management.call("GET" if changes is None else "POST", path, changes)
        return {key: value if isinstance(value, list) else [value] for key, value in doc.items()}


class Relay:
    """Servicer methods forwarding one service's calls to the workers' inference port."""

    def __init__(self, service: Any, channel: grpc.aio.Channel, policy: CallPolicy,
                 token: bytes | None, local: Any = None) -> None:
        self.policy = policy
        self.metadata = () if token is None else (("authorization", "Bearer " + token.decode()),)
        for method in service.methods:
            if local is not None and hasattr(local, method.name):
                setattr(self, method.name, getattr(local, method.name))
                continue
            path = f"/{service.full_name}/{method.name}"
            request = message_factory.GetMessageClass(method.input_type).SerializeToString
            response = message_factory.GetMessageClass(method.output_type).FromString
            kind = ("stream" if method.client_streaming else "unary") + "_" + (
                "stream" if method.server_streaming else "unary")
            call = getattr(channel, kind)(path, request_serializer=request,
                                          response_deserializer=response)
            setattr(self, method.name, self._relay(call, method.server_streaming,
                                                   method.name in PUBLIC))

    def _relay(self, call: Any, streams: bool, public: bool) -> Any:
        async def checked(context: grpc.aio.ServicerContext) -> None:
            refused = None if public else self.policy.authorized(context)
            if refused is not None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)

        def timeout(context: grpc.aio.ServicerContext) -> float | None:
            return context.time_remaining()

        async def well_formed(requests: Any, malformed: list[str]) -> Any:
            async for request in requests:
                if type(request) is Malformed:
                    malformed.append(request.message)
                    return  # ends the relayed stream; the call then fails with why
                yield request

        if streams:
            async def relay_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await checked(context)
                malformed: list[str] = []
                if type(request) is Malformed:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                if not isinstance(request, Message):  # a request stream
                    request = well_formed(request, malformed)
                try:
                    async for answer in call(request, metadata=self.metadata,
                                             timeout=timeout(context)):
                        yield answer
                except grpc.aio.AioRpcError as exc:
                    await context.abort(exc.code(), exc.details() or "")
                if malformed:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, malformed[0])

            return relay_stream

        async def relay(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await checked(context)
            if type(request) is Malformed:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            try:
                return await call(request, metadata=self.metadata, timeout=timeout(context))
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")

        return relay


class ParentManagementServer:
    """Serves the parent's gRPC management port; ``apply`` replays a management call on
    every worker (Supervisor.forward)."""

    def __init__(self, apply: Apply, max_message: int, tokens: tuple[bytes, bytes] | None,
                 workers_address: str | None) -> None:
        self.apply = apply
        self.max_message = max_message
        self.tokens = tokens
        self.workers_address = workers_address  # None: the inference gRPC port is off
        self.server: grpc.aio.Server | None = None
        self.channel: grpc.aio.Channel | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        self.server = server = grpc.aio.server(options=server_options(self.max_message, False))
        self.port = bind(server, host, port)
        management = Management(self.apply, f"{host}:{self.port}")
        policy = CallPolicy(self.tokens[1] if self.tokens else None)
        local = ParentInferenceService(management, policy)
        add_service(server, TorchServeManagement(management, policy), TS_MANAGEMENT)
        if self.workers_address is None:
            add_service(server, local, KSERVE)
        else:
            self.channel = grpc.aio.insecure_channel(self.workers_address, options=[
                ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
            token = self.tokens[0] if self.tokens else None
            add_service(server, Relay(KSERVE, self.channel, policy, token, local), KSERVE)
            add_service(server, Relay(HEALTH, self.channel, CallPolicy(None), token), HEALTH)
        await server.start()
        return self.port

    async def stop(self, grace: float) -> None:
        if self.server is not None:
            await self.server.stop(grace)
        if self.channel is not None:
            await self.channel.close()
