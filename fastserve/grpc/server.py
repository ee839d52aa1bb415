"""The gRPC server of one serving process: ``grpc.aio`` on the process's own (uvloop)
event loop, so a call reaches the data plane and the scheduler exactly as an HTTP
request does (no thread hop; measured in benchmarks/grpc.py).

The inference port serves GRPCInferenceService (mutations refused), TorchServe's
InferenceAPIsService and grpc.health.v1; the management port, when on, serves
GRPCInferenceService with mutations, TorchServe's ManagementAPIsService and health.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb

from ..core.control import ModelControl
from ..core.dataplane import DataPlane
from ..frontends._triton_settings import TritonSettings
from .health import HealthService
from .kserve import InferenceService
from .management import Management
from .protos import inference_pb2 as ts
from .protos import management_pb2 as tsm
from .services import add_service
from .status import CallPolicy
from .torchserve import TorchServeInference, TorchServeManagement

log = logging.getLogger("fastserve.grpc")

MAX_MESSAGE = 2**31 - 1  # grpc's own ceiling for a message size option
KSERVE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
TS_INFERENCE = ts.DESCRIPTOR.services_by_name["InferenceAPIsService"]
TS_MANAGEMENT = tsm.DESCRIPTOR.services_by_name["ManagementAPIsService"]
INFERENCE_SERVICES = (KSERVE.full_name, TS_INFERENCE.full_name)
MANAGEMENT_SERVICES = (KSERVE.full_name, TS_MANAGEMENT.full_name)


def server_options(max_message: int, reuse_port: bool) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", min(max_message, MAX_MESSAGE)),
        ("grpc.max_send_message_length", -1),
        # grpc turns SO_REUSEPORT on by default: only --workers may share a port; a
        # second server on a taken port must fail as HTTP's does.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]


class GrpcServers:
    """The inference gRPC server and, when asked for, the management one."""

    def __init__(self, dataplane: DataPlane, apply: Any, max_message: int,
                 tokens: tuple[bytes, bytes] | None,
                 count: Callable[[str, str | None, int], None] | None,
                 control: ModelControl, settings: TritonSettings) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self.control = control
        self.apply = apply
        self.max_message = max_message
        self.tokens = tokens
        self.count = count
        self.servers: list[grpc.aio.Server] = []
        self.port = 0
        self.management_port = 0

    def _server(self, reuse_port: bool) -> grpc.aio.Server:
        server = grpc.aio.server(options=server_options(self.max_message, reuse_port))
        self.servers.append(server)
        return server

    async def start(self, host: str, port: int, management_host: str, management_port: int,
                    reuse_port: bool = False) -> None:
        management_address = None
        if management_port:
            server = self._server(False)
            self.management_port = bind(server, management_host, management_port)
            management_address = f"{management_host}:{self.management_port}"
            policy = CallPolicy(self.tokens[1] if self.tokens else None)
            management = Management(self.apply, management_address)
            add_service(server, InferenceService(self.dataplane, self.control, policy, management,
                                                     True, self.settings),
                        KSERVE)
            add_service(server, TorchServeManagement(management, policy), TS_MANAGEMENT)
            health_pb2_grpc.add_HealthServicer_to_server(
                HealthService(self.dataplane, MANAGEMENT_SERVICES), server)
            await server.start()
        if port:
            server = self._server(reuse_port)
            self.port = bind(server, host, port)
            policy = CallPolicy(self.tokens[0] if self.tokens else None, self.count)
            management = Management(self.apply, management_address)
            add_service(server, InferenceService(self.dataplane, self.control, policy, management,
                                                     False, self.settings),
                        KSERVE)
            add_service(server, TorchServeInference(self.dataplane, policy), TS_INFERENCE)
            health_pb2_grpc.add_HealthServicer_to_server(
                HealthService(self.dataplane, INFERENCE_SERVICES), server)
            await server.start()

    async def stop(self, grace: float) -> None:
        """No new calls at once; calls in flight get up to ``grace`` seconds."""
        await asyncio.gather(*(server.stop(grace) for server in self.servers))

    def release(self) -> None:
        """Drop the stopped servers (grpc's poller thread ends once they are gone)."""
        self.servers.clear()


def bind(server: grpc.aio.Server, host: str, port: int) -> int:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc says "Failed to bind"
        raise OSError(f"cannot listen for gRPC on {address}: {exc}") from None
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return bound
