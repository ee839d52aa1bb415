"""``--workers N``: processes share the port, a killed worker is replaced, SIGTERM drains."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch

from _server import ServerProcess, free_port

grpcclient = pytest.importorskip("tritonclient.grpc")

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _wait_all_workers_ready(server: ServerProcess) -> None:
    """Each new connection may reach either worker: wait until 20 in a row say ready."""
    streak = 0
    deadline = time.monotonic() + 90
    while streak < 20:
        assert time.monotonic() < deadline, "workers never all ready"
        streak = streak + 1 if server.request("GET", "/v2/health/ready")[0] == 200 else 0
        if not streak:
            time.sleep(0.1)


def _sample() -> tuple[bytes, np.ndarray]:
    body = (EXAMPLES / "samples" / "digits_v2.json").read_bytes()
    x = np.asarray(orjson.loads(body)["inputs"][0]["data"], dtype=np.float32).reshape(1, 64)
    program = torch.export.load(str(EXAMPLES / "models" / "digits" / "1" / "model.pt2"))
    with torch.inference_mode():
        expected = program.module()(torch.from_numpy(x)).numpy()
    return body, expected


def test_workers_share_port_restart_and_drain() -> None:
    body, expected = _sample()
    with ServerProcess(EXAMPLES / "models", "--workers", "2", "--grpc-port",
                       str(free_port())) as server:
        assert server.proc is not None
        workers = _children(server.proc.pid)
        assert len(workers) == 2
        _wait_all_workers_ready(server)
        # Every answer is right, whichever worker the kernel picked.
        for _ in range(20):
            status, _, data = server.request("POST", "/v2/models/digits/infer", body)
            assert status == 200, data
            out = orjson.loads(data)["outputs"][0]
            np.testing.assert_allclose(np.asarray(out["data"], dtype=np.float32).reshape(1, 10),
                                       expected, rtol=1e-5, atol=1e-5)
        # Both workers serve gRPC on the shared port too (a new channel: a new connection).
        x = np.asarray(orjson.loads(body)["inputs"][0]["data"], dtype=np.float32).reshape(1, 64)
        for _ in range(10):
            with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
                tensor = grpcclient.InferInput("input__0", [1, 64], "FP32")
                tensor.set_data_from_numpy(x)
                np.testing.assert_allclose(client.infer("digits", [tensor]).as_numpy(
                    "output__0"), expected, rtol=1e-5, atol=1e-5)
        # The management port is the parent's: it answers from a worker.
        status, _, _ = server.request("GET", "/v2/health/ready")
        assert status == 200
        # A killed worker is replaced by a new process that serves again.
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: victim not in _children(server.proc.pid)
                  and len(_children(server.proc.pid)) == 2)
        replacement = (_children(server.proc.pid) - workers).pop()
        assert replacement != victim
        _wait_all_workers_ready(server)
        status, _, data = server.request("POST", "/v2/models/digits/infer", body)
        assert status == 200, data
        # SIGTERM: the parent forwards it, the workers drain, everyone exits 0.
        assert server.stop() == 0
        for pid in _children_safe(replacement):
            pytest.fail(f"worker {pid} still running")


def _children_safe(pid: int) -> list[int]:
    return [pid] if os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" else []


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0]
    except OSError:
        return "X"
