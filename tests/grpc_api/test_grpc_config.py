"""gRPC settings from the command line and a TorchServe config.properties (no server)."""

from __future__ import annotations

from pathlib import Path

from fastserve.cli import parse_config
from fastserve.workers import config_to_argv


def test_flags_and_defaults(tmp_path: Path) -> None:
    config = parse_config(["--models", str(tmp_path)])
    assert (config.grpc_port, config.grpc_management_port) == (8001, 0)
    config = parse_config(["--models", str(tmp_path), "--grpc-port", "0",
                           "--grpc-management-port", "9002"])
    assert (config.grpc_port, config.grpc_management_port) == (0, 9002)


def test_torchserve_grpc_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "config.properties"
    cfg.write_text("grpc_inference_port=7070\ngrpc_management_port=7071\n"
                   "grpc_inference_address=127.0.0.2\n"
                   "grpc_management_address=http://127.0.0.3\n")
    config = parse_config(["--models", str(tmp_path), "--ts-config", str(cfg)])
    assert (config.grpc_host, config.grpc_port) == ("127.0.0.2", 7070)
    assert (config.grpc_management_host, config.grpc_management_port) == ("127.0.0.3", 7071)


def test_workers_share_the_grpc_port_but_not_management(tmp_path: Path) -> None:
    config = parse_config(["--models", str(tmp_path), "--workers", "2", "--grpc-port", "7001",
                           "--grpc-management-port", "7002"])
    argv = config_to_argv(config)
    worker = parse_config(argv)
    assert (worker.grpc_port, worker.grpc_management_port) == (7001, 0)
