"""A client that disconnects: its queued request never runs; a running one ends quietly."""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from pathlib import Path

import orjson
import pytest
import torch

from _server import ServerProcess

pytestmark = pytest.mark.slow  # every test here uses a server process of its own

ROWS_SLOW = 300  # about a second of matmuls on one thread (0.13 s with 400 steps here)


class Slow(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(256, 256) / 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3000):
            x = torch.tanh(x @ self.w)
        return x.sum(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("cancel")
    folder = repo / "slow" / "1"
    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Slow()), str(folder / "model.pt"))
    (repo / "slow" / "config.toml").write_text(
        'max_batch_size = 0\n[[inputs]]\nname = "x"\ndatatype = "FP32"\nshape = [-1, 256]\n'
        '[[outputs]]\nname = "y"\ndatatype = "FP32"\nshape = [-1, 1]\n')
    with ServerProcess(repo, "--torch-threads", "1") as s:
        yield s


def _body(rows: int) -> bytes:
    return orjson.dumps({"inputs": [{"name": "x", "shape": [rows, 256], "datatype": "FP32",
                                     "data": [0.5] * (rows * 256)}]})


def _raw_request(body: bytes) -> bytes:
    return (b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _stats(server: ServerProcess) -> dict:
    status, doc = server.json("GET", "/v2/models/slow/stats")
    assert status == 200
    return doc["model_stats"][0]  # type: ignore[index]


def _cpu_seconds(server: ServerProcess) -> float:
    """The server process's user + system CPU time (Linux /proc)."""
    assert server.proc is not None
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cancelled_metric(server: ServerProcess) -> float:
    status, _, body = server.request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith("fastserve_requests_cancelled_total{") and 'model="slow"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_cancel_queued_request_never_runs(server: ServerProcess) -> None:
    before = _stats(server)["execution_count"]
    slow_result: dict = {}

    def slow() -> None:
        slow_result["status"] = server.request("POST", "/v2/models/slow/infer",
                                               _body(ROWS_SLOW))[0]

    cpu = _cpu_seconds(server)
    worker = threading.Thread(target=slow)
    worker.start()
    # The slow request must be running before the others come, else the first of them finds
    # the model idle and runs at once. A fixed sleep lost that race both ways (too short on a
    # busy machine, past the whole run on a quiet one): wait for the server to burn CPU.
    deadline = time.monotonic() + 30
    while _cpu_seconds(server) < cpu + 0.25 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "status" not in slow_result, "the slow request ended before the others were sent"
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(_raw_request(_body(1)))
        # closed at once: the client has gone away before its answer
    worker.join(60)
    assert slow_result["status"] == 200
    time.sleep(0.2)
    assert _stats(server)["execution_count"] == before + 1, "a cancelled request ran"
    assert _cancelled_metric(server) >= 3
    status, _, body = server.request("POST", "/v2/models/slow/infer", _body(1))
    assert status == 200, body


def test_cancel_running_request_is_quiet(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(_raw_request(_body(ROWS_SLOW)))
        time.sleep(0.3)  # running now
    status, _, body = server.request("POST", "/v2/models/slow/infer", _body(2))
    assert status == 200, body
    log = server.log()
    assert "Traceback" not in log and "ERROR" not in log, log
