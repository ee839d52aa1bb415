"""--grpc-port 0 costs nothing: grpcio is never loaded into the serving process."""

from __future__ import annotations

from pathlib import Path


def loaded(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_grpc_off_loads_no_grpcio(server, grpc_server) -> None:
    # The session's server runs with --grpc-port 0; grpc_server has it on (the control).
    assert server.grpc_port == 0
    assert "cygrpc" not in loaded(server.proc.pid)
    assert "cygrpc" in loaded(grpc_server.http.proc.pid)
