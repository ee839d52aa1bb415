"""Fixtures for the core tests: a fake backend, a clock, and an async runner that fails on
anything the event loop's exception handler saw (STYLE §8, "no silent async failures")."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from fastserve.core.model_config import ModelConfig
from fastserve.core.scheduler import DynamicBatcher
from fastserve.errors import UnsupportedError
from fastserve.types import DataType, TensorSpec


class FakeBackend:
    """A backend that answers ``y = 2x + 1`` and ``s = row sums`` of input ``x``.

    It records every batch it runs (rows, shapes, dtypes, the values it saw, the thread),
    raises ``ValueError`` for a batch holding ``fail_marker``, raises ``crash`` (any
    exception type, BaseException included) for a batch holding ``crash_marker``, and
    waits on ``gate`` (a threading.Event) before answering when one is set.
    """

    platform = "fake"
    device = "cpu"
    declared = True

    def __init__(
        self,
        *,
        inputs: tuple[TensorSpec, ...] = (TensorSpec("x", DataType.FP32, (-1, 3)),),
        fail_marker: float | None = None,
        crash_marker: float | None = None,
        crash: BaseException | None = None,
        gate: threading.Event | None = None,
        barrier: threading.Barrier | None = None,
        batched: bool = True,
    ) -> None:
        self.inputs = inputs
        self.outputs = (
            TensorSpec("y", inputs[0].datatype, inputs[0].shape),
            TensorSpec("s", inputs[0].datatype, (-1,) if batched else ()),
        )
        self.fail_marker = fail_marker
        self.crash_marker = crash_marker
        self.crash = crash
        self.gate = gate
        self.barrier = barrier
        self.batched = batched
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self.threads: set[str] = set()
        self.warmed = 0
        self.closed = False

    @property
    def batch_sizes(self) -> list[int]:
        return [c["rows"] for c in self.calls]

    def seen(self, value: float) -> bool:
        """Whether any batch run so far held ``value``."""
        return any(np.any(c["x"] == value) for c in self.calls)

    def infer(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        x = inputs["x"]
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.threads.add(threading.current_thread().name)
            self.calls.append({"rows": len(x) if self.batched else 1, "shape": x.shape,
                               "dtype": x.dtype, "x": x.copy(), "instance": instance})
        try:
            if self.barrier is not None:
                self.barrier.wait()
            if self.gate is not None:
                assert self.gate.wait(10), "test gate never opened"
            if self.crash_marker is not None and np.any(x == self.crash_marker):
                assert self.crash is not None
                raise self.crash
            if self.fail_marker is not None and np.any(x == self.fail_marker):
                raise ValueError(f"marker {self.fail_marker} in the batch")
            if self.batched:
                s = x.reshape(len(x), -1).sum(axis=1)
            else:
                s = x.sum()
            return {"y": x * 2 + 1, "s": s}
        finally:
            with self.lock:
                self.active -= 1

    def warmup(self) -> None:
        self.warmed += 1

    def explain(self, inputs: dict[str, Any], method: str, target: Any = None) -> dict[str, Any]:
        raise UnsupportedError("this model's backend cannot compute explanations")

    def close(self) -> None:
        self.closed = True


class FakeClock:
    """An injectable monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_backend() -> type[FakeBackend]:
    """The FakeBackend class (a factory: ``fake_backend(gate=..., fail_marker=...)``)."""
    return FakeBackend


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def opened_batchers() -> list[Any]:
    """Batchers started by ``new_batcher`` in this test; ``run_async`` closes them."""
    return []


@pytest.fixture
def run_async(opened_batchers: list[Any]) -> Callable[..., Any]:
    """Run ``coro_fn()`` on a fresh event loop, with a timeout; fail on loop errors.

    Every batcher the test started with ``new_batcher`` is closed when the coroutine
    ends, however it ends, while its loop still runs (close() fails what is still queued).
    """

    def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
        errors: list[dict[str, Any]] = []

        async def main() -> Any:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _loop, context: errors.append(context))
            try:
                return await asyncio.wait_for(coro_fn(), timeout)
            finally:
                while opened_batchers:
                    opened_batchers.pop().close()

        result = asyncio.run(main())
        assert not errors, f"the event loop reported errors: {errors}"
        return result

    return run


@pytest.fixture
def new_batcher(opened_batchers: list[Any]) -> Callable[..., Any]:
    """``new_batcher(backend, clock=None, stats=None, **config)``: a started DynamicBatcher
    for model "m" on the running loop, closed by ``run_async`` at the end (no try/finally).
    """
    def make(backend: Any, clock: Any = None, stats: Any = None, **config: Any) -> Any:
        kwargs: dict[str, Any] = {}
        if clock is not None:
            kwargs["clock"] = clock
        if stats is not None:
            kwargs["stats"] = stats
        batcher = DynamicBatcher("m", "1", backend, ModelConfig(name="m", **config),
                                 asyncio.get_running_loop(), **kwargs)
        batcher.start()
        opened_batchers.append(batcher)
        return batcher

    return make


async def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """``await wait_until(predicate)``: yield to the loop (and threads) until it holds."""
    return _wait_until


async def _load_all(repo: Any) -> None:
    repo.scan()
    thread = repo.start_loading(asyncio.get_running_loop())
    await _wait_until(lambda: not repo.loading)
    thread.join(5)


@pytest.fixture
def load_all() -> Callable[[Any], Awaitable[None]]:
    """``await load_all(repository)``: scan it and load every model it finds, to the end."""
    return _load_all


class FakeLoader:
    """A BackendLoader that builds FakeBackends and records what it was asked to load.

    ``gate``: every load waits on it. ``errors``: (model, version) -> exception raised
    instead of loading. ``warmup_errors``: the same, raised by the backend's warm-up.
    """

    def __init__(self, gate: threading.Event | None = None,
                 errors: dict[tuple[str, str], BaseException] | None = None,
                 warmup_errors: dict[tuple[str, str], BaseException] | None = None) -> None:
        self.gate = gate
        self.errors = errors or {}
        self.warmup_errors = warmup_errors or {}
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []
        self.backends: dict[tuple[str, str], FakeBackend] = {}

    def __call__(self, folder: Any, config: Any, labels: dict[str, str]) -> FakeBackend:
        key = (config.name, folder.name)
        self.calls.append((config.name, folder.name, config, labels))
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if key in self.errors:
            raise self.errors[key]
        backend = FakeBackend()
        if key in self.warmup_errors:
            error = self.warmup_errors[key]

            def warmup() -> None:
                raise error

            backend.warmup = warmup  # type: ignore[method-assign]
        self.backends[key] = backend
        return backend


@pytest.fixture
def fake_loader() -> type[FakeLoader]:
    return FakeLoader


def _make_model(root: Any, name: str, config: str | None = None,
                versions: tuple[str, ...] = ("1",), files: dict[str, str] | None = None) -> Any:
    folder = root / name
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.toml").write_text(config, encoding="utf-8")
    for filename, text in (files or {}).items():
        (folder / filename).write_text(text, encoding="utf-8")
    for version in versions:
        (folder / version).mkdir()
        (folder / version / "model.pt2").write_bytes(b"")
    return folder


@pytest.fixture
def make_model() -> Callable[..., Any]:
    """``make_model(root, name, config=None, versions=("1",), files={})``: a model folder."""
    return _make_model
