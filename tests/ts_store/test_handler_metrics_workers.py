"""Handler metrics (``context.metrics``) with ``--workers N``: every process's values on
any process's /metrics, added up (counters, histograms) or the last written (gauges)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastserve.frontends._handler_metrics import FILE_PREFIX, HandlerMetricsCollector

from _server import ServerProcess
from ts_archives import build_mar

COUNTING_HANDLER = '''import torch
from ts.torch_handler.base_handler import BaseHandler


class CountingHandler(BaseHandler):
    """TinyNet's answer; counts the rows it handled in context.metrics."""

    def preprocess(self, data):
        return torch.tensor([row.get("data") or row.get("body") for row in data])

    def postprocess(self, output):
        self.context.metrics.add_counter("RowsHandled", len(output))
        return output.tolist()
'''


class FakeControl:
    def __init__(self, recorded: list[Any]) -> None:
        self.recorded = recorded

    def handler_metrics(self) -> list[Any]:
        return self.recorded


def samples(collector: HandlerMetricsCollector) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("kind", "")): s.value
            for family in collector.collect() for s in family.samples}


def test_processes_values_are_added_up_and_the_last_gauge_wins(tmp_path: Path) -> None:
    other = [["m", "1.0", [["Rows", "counter", "count", {"kind": "a"}, [5.0]],
                           ["Lat", "histogram", "ms", {"kind": "a"}, [2.0, 30.0]],
                           ["Temp", "gauge", "C", {"kind": "a"}, [10.0]]]]]
    (tmp_path / f"{FILE_PREFIX}1.json").write_bytes(orjson.dumps(other))
    os.utime(tmp_path / f"{FILE_PREFIX}1.json", (1, 1))  # written long ago
    mine = [("m", "1.0", [("Rows", "counter", "count", {"kind": "a"}, [2.0]),
                          ("Lat", "histogram", "ms", {"kind": "a"}, [1.0, 5.0]),
                          ("Temp", "gauge", "C", {"kind": "a"}, [20.0])])]
    collector = HandlerMetricsCollector(FakeControl(mine), str(tmp_path))  # type: ignore[arg-type]
    got = samples(collector)
    assert got == {("Rows_total", "a"): 7.0, ("Lat_count", "a"): 3.0, ("Lat_sum", "a"): 35.0,
                   ("Temp", "a"): 20.0}
    assert (tmp_path / f"{FILE_PREFIX}{os.getpid()}.json").is_file()  # published for others
    alone = HandlerMetricsCollector(FakeControl(mine))  # type: ignore[arg-type]
    assert samples(alone)[("Rows_total", "a")] == 2.0  # one process: no files


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    pytest.importorskip("ts.torch_handler.base_handler")
    work = tmp_path_factory.mktemp("counting")
    store = work / "model-store"
    build_mar(work, store, "counting", "1.0", handler=COUNTING_HANDLER)
    with ServerProcess(store, "--model-store", str(store), "--models", "counting.mar",
                       "--workers", "2") as srv:
        streak, deadline = 0, time.monotonic() + 90
        while streak < 20:  # each new connection may reach either worker: both loaded
            assert time.monotonic() < deadline, "workers never both ready"
            ready = srv.request("GET", "/v2/models/counting/ready")[0] == 200
            streak = streak + 1 if ready else 0
            if not ready:
                time.sleep(0.1)
        yield srv


def rows_handled(server: ServerProcess) -> float:
    status, _, body = server.request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith("RowsHandled_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_handler_metrics_of_every_worker_on_metrics(server: ServerProcess) -> None:
    sent = 40
    for _ in range(sent):  # a new connection each: the kernel spreads them over workers
        status, _, _ = server.request("POST", "/predictions/counting",
                                      orjson.dumps([1.0, 2.0, 3.0, 4.0]),
                                      {"Content-Type": "application/json"})
        assert status == 200
    deadline = time.monotonic() + 30  # each worker publishes within a second
    while rows_handled(server) != sent and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rows_handled(server) == sent
