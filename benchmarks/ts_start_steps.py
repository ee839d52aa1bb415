"""Where fastserve's start goes on the ts_store case: one start, pinned like the benchmark,
with a mark at each step (process start, fastserve imported, listening, torch imported,
model loaded, first answer), each with the wall time and the process's CPU time.

    python benchmarks/ts_start_steps.py [--model eager]    (benchmarks/ts_store.py runs it)

The marks come from a wrapper around ``fastserve.cli.main`` (it patches App.start and
TorchLoader.__call__ to print them), so the start itself is the real one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import _harness as h

WRAPPER = r"""
import sys, time
def mark(what):
    print("MARK", repr(time.process_time()), repr(time.time()), what, file=sys.stderr,
          flush=True)
mark("python started")
import gc
gc.disable()  # as cli.main does first
import fastserve.cli as cli
import fastserve.app as app
mark("fastserve imported")
start, load = app.App.start, app.TorchLoader.__call__
async def started(self):
    await start(self)
    mark("listening, models loading")
def loaded(self, *args):
    mark("loader thread: importing torch")
    import torch
    mark("torch imported")
    backend = load(self, *args)
    mark("model loaded")
    return backend
app.App.start, app.TorchLoader.__call__ = started, loaded
sys.argv = ["fastserve", *sys.argv[1:]]
sys.exit(cli.main())
"""


def steps(store: Path, model: str, body: bytes) -> list[tuple[str, float, float]]:
    """(step, wall seconds since the process started, CPU seconds of the process)."""
    port = h.free_port()
    argv = [sys.executable, "-c", WRAPPER, "--model-store", str(store), "--models",
            f"{model}.mar", "--port", str(port), "--management-port", str(h.free_port()),
            "--grpc-port", str(h.free_port()), "--grpc-management-port", str(h.free_port()),
            "--log-level", "warning"]
    epoch = time.time()
    srv = h.Server("fastserve-steps", argv, port, Path(__file__).resolve().parent.parent)
    try:
        ready = srv.wait_until("POST", f"/predictions/{model}", body, timeout=300)
        log = Path(srv.log.name).read_text(errors="replace").splitlines()
    finally:
        srv.stop()
    found = [("process started", 0.0, 0.0)]
    for line in log:
        if line.startswith("MARK "):
            _, cpu, wall, what = line.split(" ", 3)
            found.append((what, float(wall) - epoch, float(cpu)))
    return found + [("first answer (client)", ready, float("nan"))]


def report(found: list[tuple[str, float, float]]) -> None:
    print(f"  {'fastserve start, step by step':34s} {'wall at':>8s} {'step':>7s} "
          f"{'CPU at':>7s} {'step':>6s}")
    wall0 = cpu0 = 0.0
    for what, wall, cpu in found:
        print(f"  {what:34s} {wall:8.3f} {wall - wall0:7.3f} {cpu:7.3f} {cpu - cpu0:6.3f}")
        wall0, cpu0 = wall, (cpu if cpu == cpu else cpu0)


def main() -> None:
    from ts_store import BODIES, build_store

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="eager", choices=sorted(BODIES))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ts-start-steps-") as tmp:
        report(steps(build_store(Path(tmp)), args.model, BODIES[args.model]))


if __name__ == "__main__":
    main()
