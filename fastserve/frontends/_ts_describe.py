"""TorchServe's describe document for one model version (docs/management_api.md)."""

from __future__ import annotations

import os
import time
from typing import Any

from ..core.info import READY, VersionDetail


def process_rss() -> int:
    """This serving process's resident memory in bytes (TorchServe's per-worker
    memoryUsage: each instance runs in this process)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak is what there is
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024



def _iso(seconds: float) -> str:
    whole = int(seconds)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            + f".{int((seconds - whole) * 1000):03d}Z")


def describe_version(v: VersionDetail) -> dict[str, Any]:
    delay = v.batch_delay_ms
    doc: dict[str, Any] = {
        "modelName": v.name,
        "modelVersion": v.version,
        "modelUrl": v.folder,
        "engine": "Torch",
        "runtime": "python",
        "minWorkers": v.instances,
        "maxWorkers": v.instances,
        "batchSize": v.max_batch_size,
        "maxBatchDelay": int(delay) if delay == int(delay) else delay,
        "jobQueueSize": v.max_queue_size,
        "status": v.state,
        "default": v.default,
        "versions": list(v.versions),
        "device": v.device,
        "platform": v.platform,
        "queueDepth": v.queue_depth,
        "workers": [],
    }
    if v.state == READY:
        doc["workers"] = [{"id": f"{v.name}-{v.version}-{i}",
                           "startTime": _iso(v.loaded_at), "status": "READY",
                           "gpu": v.device.startswith("cuda"), "memoryUsage": process_rss()}
                          for i in range(v.instances)]
    if v.error:
        doc["error"] = v.error
    return doc
