"""benchmarks/locust_runner.py: figures it did not measure print as n/a, never 0%."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import locust_runner  # noqa: E402


def _samples(server_ticks: int) -> list[tuple[float, int, int]]:
    clk = os.sysconf("SC_CLK_TCK")
    return [(float(t), t * clk // 2, t * server_ticks) for t in range(12)]


def test_server_cpu_is_none_when_the_server_was_not_sampled() -> None:
    figures = locust_runner.cpu_figures(_samples(0), 10, 1.0, server_sampled=False)
    assert figures["server_cpu"] is None and locust_runner._pct(figures["server_cpu"]) == "n/a"
    assert figures["locust_cpu"] == 0.5


def test_server_cpu_measured_when_sampled() -> None:
    clk = os.sysconf("SC_CLK_TCK")
    figures = locust_runner.cpu_figures(_samples(clk), 10, 1.0)
    assert abs(figures["server_cpu"] - 1.0) < 1e-9
