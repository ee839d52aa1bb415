"""Source checks as tests (asyncpg/uvloop test__sourcecode): lint, layering, Cython lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def test_sourcecode_ruff() -> None:
    result = _run(_tool("ruff"), "check", "fastserve", "tests", "benchmarks", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_sourcecode_import_layers() -> None:
    result = _run(_tool("lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_sourcecode_cython_lint() -> None:
    sources = sorted(str(p.relative_to(ROOT)) for pattern in ("*.pyx", "*.pxi")
                     for p in (ROOT / "fastserve").rglob(pattern))
    result = _run(_tool("cython-lint"), "--max-line-length", "100", *sources)
    assert result.returncode == 0, result.stdout + result.stderr
