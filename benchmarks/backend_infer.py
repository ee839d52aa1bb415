"""TorchBackend.infer against the bare forward it wraps, in one process (issue 18 T4).

Four small CPU models (64→256→10 with one output, and 64→256→(10, 3) with two), each
as TorchScript (model.pt) and torch.export (model.pt2), are loaded by TorchBackend from
a temporary model repository; on a thread holding the backend's instance_scope (as an
instance thread does), it times ``backend.infer({"input__0": x}, 0)`` for a read-only
[1, 64] FP32 array (what the request decoders hand over) and the model's bare forward on
the same tensor (the scripted method, or the exported graph with its weights), each the
best of --runs runs of --n calls in thread CPU time, alternated. The difference is the
backend's own Python around the forward (tensor conversion, output naming, timings).

    python benchmarks/backend_infer.py [--n 4000 --runs 15]

To compare two trees, run it with PYTHONPATH set to each. Not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fastserve.backends.lifted_program import LiftedProgram
from fastserve.backends.torch import TorchBackend
from fastserve.core.model_config import parse_model_config

OUTPUT = '[[outputs]]\nname = "output__{i}"\ndatatype = "FP32"\nshape = [-1, {w}]\n'
CONFIG = 'max_batch_size = 0\n[[inputs]]\nname = "input__0"\ndatatype = "FP32"\nshape = [-1, 64]\n'


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.a, self.b = nn.Linear(64, 256), nn.Linear(256, 10), nn.Linear(256, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.hidden(x))
        return self.a(h), self.b(h)


def write_models(root: Path) -> list[str]:
    torch.manual_seed(0)
    nets = {"one": (nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)), [10]),
            "two": (TwoOutputs(), [10, 3])}
    names = []
    for label, (net, widths) in nets.items():
        net.eval()
        config = CONFIG + "".join(OUTPUT.format(i=i, w=w) for i, w in enumerate(widths))
        for kind in ("ts", "pt2"):
            folder = root / f"{label}_{kind}"
            (folder / "1").mkdir(parents=True)
            (folder / "config.toml").write_text(config)
            if kind == "ts":
                torch.jit.save(torch.jit.script(net), str(folder / "1" / "model.pt"))
            else:
                program = torch.export.export(net, (torch.zeros(2, 64),),
                                              dynamic_shapes=({0: torch.export.Dim("batch")},))
                torch.export.save(program, str(folder / "1" / "model.pt2"))
            names.append(folder.name)
    return names


def bare_forward(backend: TorchBackend, t: torch.Tensor) -> Callable[[], Any]:
    model = backend.model
    if isinstance(model, LiftedProgram):  # the graph with its weights, nothing around it
        weights, graph = tuple(v for _, v in model.lifted), model.graph.forward
        return lambda: graph(*weights, t)
    forward = model.forward
    return lambda: forward(t)


def measure(backend: TorchBackend, n: int, runs: int) -> tuple[float, float]:
    x = np.random.default_rng(0).standard_normal((1, 64), dtype=np.float32)
    x.flags.writeable = False
    inputs = {"input__0": x}
    calls = {"infer": lambda: backend.infer(inputs, 0),
             "forward": bare_forward(backend, torch.from_numpy(x))}
    best = dict.fromkeys(calls, float("inf"))

    def run() -> None:
        with backend.instance_scope():
            for _ in range(runs):
                for key, fn in calls.items():
                    t0 = time.thread_time()
                    for _ in range(n):
                        fn()
                    best[key] = min(best[key], (time.thread_time() - t0) / n * 1e6)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return best["infer"], best["forward"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="fastserve-backend-infer-") as tmp:
        root = Path(tmp)
        print(f"{'model':9s} {'platform':20s} {'infer µs':>9s} {'forward µs':>11s} "
              f"{'difference':>11s} {'ratio':>6s}")
        for name in write_models(root):
            backend = TorchBackend(root / name / "1", parse_model_config(root / name), {})
            infer, forward = measure(backend, args.n, args.runs)
            print(f"{name:9s} {backend.platform:20s} {infer:9.2f} {forward:11.2f} "
                  f"{infer - forward:11.2f} {infer / forward:6.3f}")


if __name__ == "__main__":
    main()
