"""benchmarks/gpu_check.py in its CPU mode, so the GPU check cannot rot between GPU runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_wheels  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU run is benchmarks/gpu_check.sh")
def test_cpu_half_checks_outputs_and_measures(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--duration", "0.4",
                          "--concurrency", "1,2", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no CUDA device here" in run.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    outputs = report["outputs"]["cpu"]
    assert set(outputs) == {"digits", "conv", "conv_nobatch", "conv_2inst", "two"}
    assert all(r["ok"] for r in outputs.values()), outputs
    rows = report["load"]
    assert {(r["model"], r["concurrency"]) for r in rows} == {
        (m, c) for m in ("conv", "conv_nobatch") for c in (1, 2)}
    assert all(r["rps"] > 0 and r["errors"] == 0 for r in rows), rows
    assert set(report["ratios"]["batching_on_vs_off"]) == {"1", "2"}
    assert (tmp_path / "gpu_check.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wheels_carried_are_what_the_gpu_machine_lacks() -> None:
    names = [w.split(">")[0].split("=")[0].split("[")[0] for w in gpu_wheels.wanted()]
    assert {"httptools", "orjson", "python-multipart", "setuptools"} <= set(names)
    assert not set(names) & gpu_wheels.ON_GPU_MACHINE
