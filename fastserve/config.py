"""Server settings from the command line (model settings live in each config.toml)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .core.ts_store import StoreSettings

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*\Z", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "tib": 1024**4, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_size(text: str) -> int:
    """'100MB' -> 100_000_000; bytes or a unit (KB, MB, GB, and KiB, MiB, GiB)."""
    m = _SIZE.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use bytes or a unit: 64KB, 100MB, 1GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class ServerConfig:
    models: Path
    host: str = "127.0.0.1"
    port: int = 8080
    management_host: str = "127.0.0.1"
    management_port: int = 8081
    workers: int = 1
    device: str = "auto"
    torch_threads: int | None = None
    log_level: str = "info"
    access_log: bool = False
    log_format: str = "text"
    max_request_size: int = 100_000_000
    poll_interval: float | None = None
    drain_timeout: float = 30.0
    allow_shared_memory: bool = False
    auth_token_file: Path | None = None
    strict_readiness: bool = False
    # TorchServe's start line (--model-store, --ts-config): archives, selection, defaults
    store: StoreSettings = field(default_factory=StoreSettings)
    ts_argv: tuple[str, ...] = ()  # the command line, for --workers' processes
    ts_notes: tuple[str, ...] = ()  # ignored keys and flags: logged once at start
    metrics_host: str = "127.0.0.1"  # config.properties metrics_address: /metrics there too
    metrics_port: int | None = None
    # The command line's default is 8001 (CONTRACT §1); off here so that a server built in
    # code (tests, embedding) does not take a fixed port unless asked to.
    grpc_port: int = 0
    grpc_management_port: int = 0
    grpc_host: str | None = None  # None: the inference host (TorchServe's grpc_*_address)
    grpc_management_host: str | None = None  # None: the management host

    @property
    def shares_port(self) -> bool:
        """TorchServe's one port for both APIs (config.properties gives them one address)."""
        return self.port != 0 and (self.management_host, self.management_port) == (
            self.host, self.port)
