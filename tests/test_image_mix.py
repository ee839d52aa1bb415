"""benchmarks/image_mix.py's summary: the ratios it prints are those of the rounds given,
and the noise line is the spread of tensor-alone p99 (no server started)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import image_mix  # noqa: E402


def _round(alone_p99: float, mixed_p99: float, alone_rps: float, mixed_rps: float,
           image_rps: float, image_p99: float, same_bytes_p99: float
           ) -> dict[str, dict[str, float]]:
    return {"alone": {"p99_ms": alone_p99, "rps": alone_rps},
            "mixed": {"p99_ms": mixed_p99, "rps": mixed_rps},
            "same_bytes": {"p99_ms": same_bytes_p99},
            "images": {"p99_ms": image_p99, "rps_beside": image_rps}}


def test_summary_prints_ratios_noise_and_medians(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_round(4.0, 8.0, 1000, 900, 100, 500, 4.0),
            _round(5.0, 5.0, 2000, 2000, 50, 700, 10.0),
            _round(10.0, 12.0, 1000, 1100, 80, 600, 8.0)]
    image_mix.summarise("A", runs)
    ratios, medians = capsys.readouterr().out.splitlines()
    assert "per round: 1.00x, 1.20x, 2.00x (median 1.20x)" in ratios
    # with images / with the same bytes: 8/4, 5/10, 12/8
    assert "answered at once: 0.50x, 1.50x, 2.00x (median 1.50x)" in ratios
    assert "tensor-alone p99 4.00-10.00 ms (2.50x)" in ratios
    assert "tensor req/s with images / alone 1.00x" in medians  # of 0.9, 1.0, 1.1
    assert "image req/s beside the tensors 80" in medians and "image p99 600 ms" in medians


def test_median_of_an_odd_and_an_even_count() -> None:
    assert image_mix.median([3.0, 1.0, 2.0]) == 2.0
    assert image_mix.median([4.0, 1.0]) == 4.0  # the upper of two, as printed per tree
