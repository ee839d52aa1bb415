"""``grpc.health.v1.Health`` for Kubernetes gRPC probes: the server (service "") or any
service of this port is SERVING once the models have loaded, NOT_SERVING while loading
or draining; a model's name as the service asks for that model's default version."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..core.dataplane import DataPlane
from ..errors import ModelNotFoundError

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
WATCH_INTERVAL = 1.0  # seconds between readiness checks of a Watch


class HealthService(health_pb2_grpc.HealthServicer):
    def __init__(self, dataplane: DataPlane, services: tuple[str, ...]) -> None:
        self.dataplane = dataplane
        self.services = frozenset(services) | {"", health_pb2.DESCRIPTOR.services_by_name[
            "Health"].full_name}

    def status(self, service: str) -> int | None:
        if service in self.services:
            return SERVING if self.dataplane.ready() else NOT_SERVING
        try:
            return SERVING if self.dataplane.model_ready(service) else NOT_SERVING
        except ModelNotFoundError:
            return None

    async def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"unknown service or model {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> Any:
        last = None
        while True:
            status = self.status(request.service)
            if status is None:
                status = SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL)
