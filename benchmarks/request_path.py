"""The modules one v2 JSON infer (or TorchServe /predictions) passes through, socket to
model and back (issue 14).

Feeds one POST /v2/models/m/infer (``--api predictions``: POST /predictions/m) to a
connected protocol (no socket: _testbase's
MockTransport) over the real router, front-end, data plane and scheduler, with a numpy
backend, and prints:

- each call that crosses from one fastserve module into another, on the loop and on the
  instance thread (a coroutine resumed after an await is a return, marked "resume", not
  an entry);
- the stops: the modules that carry the request, read off the stacks while the model
  runs: the loop's waiting coroutine chain (dispatch -> front-end -> data plane ->
  scheduler), and the instance thread's stack down to the model. A loop callback that
  carries the request where no stack shows it (a deferred dispatch) is a stop too. The
  way back returns through the same frames; the first loop callback after the model ran
  (the instance's answer) wakes them. (http._protocol, compiled, is invisible to the
  profiler: it is the stop before dispatch);
- per stop, the helper modules it calls (called and returned, carrying nothing on);
- how often each module was entered, and the stops entered more than once.

    python benchmarks/request_path.py [--api predictions]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from fastserve._testbase import get_connected_protocol
from fastserve.core.dataplane import DataPlane
from fastserve.core.repository import ModelRepository
from fastserve.frontends.kserve_v2 import KServeV2Frontend
from fastserve.frontends.torchserve import TorchServeFrontend
from fastserve.http.router import Router
from fastserve.types import DataType, TensorSpec

ROOT = Path(__file__).resolve().parent.parent / "fastserve"
CONFIG = ('max_batch_size = 8\nbatch_delay_ms = 0\n[[inputs]]\nname = "x"\nshape = [-1, 4]\n'
          '[[outputs]]\nname = "y"\nshape = [-1, 4]\n')


class Backend:
    inputs = (TensorSpec("x", DataType.FP32, (-1, 4)),)
    outputs = (TensorSpec("y", DataType.FP32, (-1, 4)),)
    platform, device, declared = "numpy", "cpu", True
    loop: asyncio.AbstractEventLoop | None = None
    stacks: dict[str, list[str]] = {}

    def infer(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        if RECORDING.is_set() and self.loop is not None:
            # What carries the request while the model runs: this thread's stack, and the
            # loop's coroutine chain that waits for the answer.
            Backend.stacks["thread"] = _modules(_frames(sys._getframe()))
            Backend.stacks["loop"] = _modules(
                f for task in asyncio.all_tasks(self.loop) for f in _awaiting(task))
        return {"y": inputs["x"] * 2}

    def warmup(self) -> None: ...

    def close(self) -> None: ...


def module_of(frame: Any) -> str | None:
    path = Path(frame.f_code.co_filename)
    if path == Path(__file__).resolve() and frame.f_code.co_name == "infer":
        return "backend"
    try:
        return str(path.relative_to(ROOT).with_suffix("")).replace("/", ".")
    except ValueError:
        return None


RECORDING = threading.Event()


def _frames(frame: Any) -> list[Any]:
    """A thread's frames, outermost first."""
    out = []
    while frame is not None:
        out.append(frame)
        frame = frame.f_back
    return out[::-1]


def _awaiting(task: Any) -> list[Any]:
    """A task's suspended coroutine frames, outermost first."""
    out, coro = [], task.get_coro()
    while inspect.iscoroutine(coro) and coro.cr_frame is not None:
        out.append(coro.cr_frame)
        coro = coro.cr_await
    return out


def _modules(frames: Any) -> list[str]:
    """Our modules in ``frames``, consecutive repeats as one."""
    out: list[str] = []
    for frame in frames:
        module = module_of(frame)
        if module is not None and (not out or out[-1] != module):
            out.append(module)
    return out


STARTED: set[int] = set()  # coroutine frames seen: a later "call" on one is a resume


def trace(log: list[tuple[str, str, str]]) -> Any:
    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call" or not RECORDING.is_set():
            return
        callee = module_of(frame)
        if callee is None:
            return
        if frame.f_code.co_flags & inspect.CO_COROUTINE:
            if id(frame) in STARTED:
                log.append(("resume", callee, frame.f_code.co_name))
                return
            STARTED.add(id(frame))
        caller = frame.f_back
        while caller is not None and module_of(caller) is None:
            caller = caller.f_back  # asyncio / threading frames between two of ours
        source = module_of(caller) if caller is not None else None
        if source != callee:
            log.append((source or "-", callee, frame.f_code.co_name))
    return profile


# Per API: its front-end, the request (path, body), the end of the answer, and what the
# answer holds for x = [1, 2, 3, 4].
APIS: dict[str, tuple[Any, bytes, bytes, bytes, bytes]] = {
    "v2": (KServeV2Frontend, b"/v2/models/m/infer", orjson.dumps({"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
        b"}]}", b'"data":[2.0,4.0,6.0,8.0]'),
    "predictions": (TorchServeFrontend, b"/predictions/m", b"[1, 2, 3, 4]", b"]",
                    b"[2.0,4.0,6.0,8.0]"),
}


async def trace_request(api: str = "v2"
                        ) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """One request of ``api`` (APIS), traced: the crossings (caller, callee, function),
    the stops socket to model, and the way back."""
    frontend, path, body, end, answer = APIS[api]
    STARTED.clear()
    Backend.stacks = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        (folder / "1").mkdir(parents=True)
        (folder / "1" / "model.pt").write_bytes(b"")
        (folder / "config.toml").write_text(CONFIG)
        log: list[tuple[str, str, str]] = []
        threading.setprofile(trace(log))  # the instance thread, started by the load, too
        repo = ModelRepository(Path(tmp), lambda *_: Backend())
        repo.scan()
        repo.start_loading(asyncio.get_running_loop()).join(10)
        while repo.loading:
            await asyncio.sleep(0.01)
        Backend.loop = asyncio.get_running_loop()
        router = Router()
        frontend(DataPlane(repo)).register(router)
        protocol = get_connected_protocol(router)
        transport: Any = protocol.transport
        raw = (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
               b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        protocol.data_received(raw)  # warm: caches filled, as on a running server
        await asyncio.sleep(0.2)
        transport.buffer.clear()
        sys.setprofile(trace(log))
        RECORDING.set()
        protocol.data_received(raw)
        for _ in range(2000):  # up to 10 s on a busy machine
            if transport.buffer.endswith(end):
                break
            await asyncio.sleep(0.005)
        RECORDING.clear()
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        assert answer in transport.buffer, bytes(transport.buffer)
        for version in repo.all_versions():
            version.batcher.close()  # type: ignore[union-attr]
    # Loop callbacks into our modules once the innermost waiting module has the request
    # carry it where no stack shows them: before the model runs (a deferred dispatch, a
    # timer) they are stops; the first after it brings the answer back and wakes the
    # waiting chain.
    loop, thread = Backend.stacks["loop"], Backend.stacks["thread"]
    start = next(i for i, (_, callee, _) in enumerate(log) if callee == loop[-1])
    ran = next(i for i, (_, callee, _) in enumerate(log) if callee == "backend")
    hops = [c for s, c, _ in log[start:ran] if s == "-" and c not in loop + thread]
    answer = [c for s, c, _ in log[ran:] if s == "-"][:1]
    stops = ["http._protocol", *loop, *dict.fromkeys(hops), *thread]
    return log, stops, [*answer, *loop[::-1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", choices=sorted(APIS), default="v2")
    log, stops, back = asyncio.run(trace_request(parser.parse_args().api))
    for source, callee, name in log:
        print(f"{source:>24} -> {callee}.{name}")
    print("\nstops, socket to model:", " -> ".join(stops))
    print("back: " + " -> ".join(back)
          + " (the loop callback that brings the answer back; then the waiting coroutines"
          " resume and return)")
    entries = [(s, c) for s, c, _ in log if s != "resume"]
    for stop in stops:
        helpers = sorted({c for s, c in entries if s == stop and c not in stops})
        if helpers:
            print(f"  {stop} calls helpers: {', '.join(helpers)}")
    counts = Counter(c for _, c in entries)
    print("entered (calls into a module, resumes not counted):", dict(counts))
    again = [s for s in stops if s != "http._protocol" and counts[s] > 1]
    print(f"{len(stops)} stops; stops entered more than once: {', '.join(again) or 'none'}")


if __name__ == "__main__":
    main()
