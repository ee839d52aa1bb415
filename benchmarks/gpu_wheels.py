"""Fetch the wheels the GPU machine lacks into benchmarks/gpu_wheels/ (run here, not there).

The GPU machine has PyTorch, Cython, uvloop, numpy, Pillow and prometheus-client for
Python 3.12 and no package index; everything else fastserve imports travels with the tree
(`run --carry benchmarks/gpu_wheels`). The list is pyproject's dependencies minus what
that machine has, plus setuptools and wheel to build the codec there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "gpu_wheels"
ON_GPU_MACHINE = {"torch", "numpy", "uvloop", "pillow", "prometheus-client", "cython"}
BUILD = ["setuptools>=77", "wheel"]


def wanted() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    keep = [d for d in deps
            if re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower() not in ON_GPU_MACHINE]
    return keep + BUILD


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    reqs = wanted()
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                    "--python-version", "3.12", "--platform", "manylinux2014_x86_64",
                    "--no-deps", "-d", str(OUT), *reqs], check=True)
    size = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"{len(list(OUT.iterdir()))} wheels, {size / 2**20:.1f} MiB in {OUT} for: "
          + " ".join(reqs))
    return 0 if size < 60 * 2**20 else 1


if __name__ == "__main__":
    sys.exit(main())
