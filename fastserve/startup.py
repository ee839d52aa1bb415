"""What a server says once at start: one line of its effective settings, and a warning
when DIR holds no model (a typo in --models would otherwise start silently)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from .config import ServerConfig
from .core.files import VERSION_RE, is_archive

log = logging.getLogger("fastserve")


def settings_line(config: ServerConfig, port: int, management_port: int,
                  grpc: str, models: Iterable[str]) -> str:
    """``grpc``: "host:port" (and its management address), or "off"."""
    names = sorted(models)
    listed = ", ".join(names[:20]) + (f", ... ({len(names) - 20} more)" if len(names) > 20
                                      else "")
    return (f"fastserve serving {config.models}: inference http://{config.host}:{port}, "
            f"management http://{config.management_host}:{management_port}, gRPC {grpc}, "
            f"workers {config.workers}, device {config.device}, "
            f"{len(names)} model(s) found" + (f" ({listed})" if names else ""))


def log_start(config: ServerConfig, port: int, management_port: int, grpc: str,
              models: Iterable[str]) -> None:
    names = list(models)
    log.info("%s", settings_line(config, port, management_port, grpc, names))
    if not names:
        log.warning("no model found in %s: each model is a folder DIR/<name>/ holding version "
                    "folders DIR/<name>/1/model.pt2 (or model.pt, a TorchServe .mar, or a "
                    "Triton config.pbtxt layout); see docs/reference.md", config.models)


def models_on_disk(root: Path) -> list[str]:
    """DIR's model folders that hold a version folder, and its archives (blocking)."""
    found = []
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if is_archive(path) or (path.is_dir() and any(
                sub.is_dir() and VERSION_RE.match(sub.name) for sub in path.iterdir())):
            found.append(path.name)
    return found


def collect_garbage_after(loader: threading.Thread, loop: asyncio.AbstractEventLoop) -> None:
    """Turn the cyclic GC (off since cli.main) back on once ``loader`` is done, what is
    loaded by then frozen out of its passes (App turns it on sooner, when a first model
    is READY: requests then make garbage, and the other models may take long to load).

    The start's own cyclic garbage is frozen with it, never freed: a bounded, one-time
    cost (7,051 objects for the ts_store eager case), where collecting it first would
    hold the GIL for a full pass (0.1-0.3 s here) just as the first requests arrive."""

    def enable(_: object) -> None:
        gc.freeze()
        gc.enable()

    loop.run_in_executor(None, loader.join).add_done_callback(enable)
