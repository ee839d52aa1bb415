"""One fastserve with gRPC (inference + management ports, shared memory on) for the
gRPC tests, on the session's model repository; tritonclient.grpc clients on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _server import ServerProcess, free_port

grpcclient = pytest.importorskip("tritonclient.grpc")

MAX_REQUEST = 4_000_000  # --max-request-size of this server: the oversize tests go past it


class GrpcServer:
    def __init__(self, http: ServerProcess, port: int, management_port: int) -> None:
        self.http = http
        self.port = port
        self.management_port = management_port
        self.url = f"127.0.0.1:{port}"
        self.management_url = f"127.0.0.1:{management_port}"
        self.max_request = MAX_REQUEST


@pytest.fixture(scope="package")
def grpc_server(model_repository: Path) -> Iterator[GrpcServer]:
    port, management_port = free_port(), free_port()
    with ServerProcess(model_repository, "--grpc-port", str(port), "--grpc-management-port",
                       str(management_port), "--allow-shared-memory", "--max-request-size",
                       str(MAX_REQUEST)) as srv:
        yield GrpcServer(srv, port, management_port)
        code = srv.stop()
    assert code == 0, f"fastserve exited with {code} after SIGTERM:\n{srv.log()}"


@pytest.fixture(scope="package")
def triton(grpc_server: GrpcServer) -> Iterator[Any]:
    client = grpcclient.InferenceServerClient(grpc_server.url)
    yield client
    client.close()


@pytest.fixture(scope="package")
def triton_management(grpc_server: GrpcServer) -> Iterator[Any]:
    client = grpcclient.InferenceServerClient(grpc_server.management_url)
    yield client
    client.close()
