#!/usr/bin/env bash
# The GPU check in one command, on a GPU machine with no package index (see docs/gpu.md).
# Before: `python benchmarks/gpu_wheels.py` here, then carry benchmarks/gpu_wheels there.
# It makes a venv that sees the machine's torch/numpy/Cython, installs the carried wheels
# and fastserve with --no-deps (building the Cython codec there), then runs the check.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
venv=${GPU_CHECK_VENV:-/tmp/fastserve-gpu-venv}
python3 -m venv --system-site-packages "$venv"
. "$venv/bin/activate"
pip install --quiet --no-index --no-deps benchmarks/gpu_wheels/*.whl
pip install --quiet --no-index --no-deps --no-build-isolation -e .
python -c "import torch, fastserve.codec as c; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), 'codec', c.IMPLEMENTATION)"
python benchmarks/gpu_check.py --out "$out" "$@"
