"""core.background: image decoding on a SCHED_IDLE thread beside the instance thread, which
takes over a step that found no idle CPU within the grace period."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import weakref
from collections import Counter
from typing import Any

import pytest

from fastserve.core import background
from fastserve.core.background import Background


def _thread_of() -> tuple[str, int]:
    policy = os.sched_getscheduler(0) if sys.platform == "linux" else -1
    return threading.current_thread().name, policy


def _in_thread(fn: Any) -> Any:
    """fn() on a thread of its own (as an instance thread calls Background.run)."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), name="instance")
    t.start()
    t.join(10)
    assert not t.is_alive()
    return out[0]


@pytest.fixture
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """No take-over: a box busy elsewhere may leave a SCHED_IDLE thread waiting a while."""
    monkeypatch.setattr(background, "GRACE", 60.0)


def test_units_run_in_order_on_the_background_thread(patient: None) -> None:
    bg = Background("fastserve-m-0")
    results = _in_thread(lambda: bg.run([lambda i=i: (i, *_thread_of()) for i in range(5)]))
    assert [r[0] for r in results] == [0, 1, 2, 3, 4]
    assert {r[1] for r in results} == {"fastserve-m-0-background"}
    if sys.platform == "linux":
        assert {r[2] for r in results} == {os.SCHED_IDLE}
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's stays as it was


def test_a_units_exception_is_its_result_and_the_others_run() -> None:
    bg = Background("fastserve-m-0")

    def bad() -> None:
        raise ValueError("not an image")

    ok, err, ok2 = _in_thread(lambda: bg.run([lambda: 1, bad, lambda: 3]))
    assert (ok, ok2) == (1, 3)
    assert isinstance(err, ValueError) and str(err) == "not an image"
    assert _in_thread(lambda: bg.run([])) == []


def test_the_instance_thread_takes_over_a_step_the_background_thread_cannot_finish(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The background thread stalls inside the first unit (as a SCHED_IDLE thread does
    # while other threads keep the core busy); the caller must not wait for it.
    monkeypatch.setattr(background, "GRACE", 0.05)
    stalled, release = threading.Event(), threading.Event()
    runs: Counter[int] = Counter()

    def unit(i: int) -> str:
        runs[i] += 1
        if i == 0 and threading.current_thread().name.endswith("-background"):
            stalled.set()
            release.wait(10)
        return threading.current_thread().name

    bg = Background("fastserve-m-0")
    try:
        results = _in_thread(lambda: bg.run([lambda i=i: unit(i) for i in range(4)]))
        assert stalled.is_set()
        assert results == ["instance"] * 4  # every unit answered by the instance thread
        assert runs == {0: 2, 1: 1, 2: 1, 3: 1}  # only the stalled one ran twice
    finally:
        release.set()
    # The stalled unit's late result does not replace the one already given.
    assert bg.thread is not None
    time.sleep(0.05)
    assert results == ["instance"] * 4


def test_the_background_thread_ends_with_its_instance_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "POLL", 0.01)
    bg = Background("fastserve-m-0")
    assert _in_thread(lambda: bg.run([lambda: 1])) == [1]
    assert bg.thread is not None
    bg.thread.join(5)  # a server's shutdown joins every thread: this one must end
    assert not bg.thread.is_alive()


def test_an_idle_background_thread_ends_and_the_next_step_starts_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "POLL", 0.01)
    monkeypatch.setattr(background, "IDLE_EXIT", 0.05)
    bg = Background("fastserve-m-0")
    stop = threading.Event()
    seen: list[Any] = []

    def instance() -> None:  # an instance thread that lives on between steps
        seen.append(bg.run([lambda: 1]))
        first = bg.thread
        assert first is not None
        first.join(5)
        seen.append(first.is_alive())
        seen.append(bg.run([lambda: 2]))
        seen.append(bg.thread is not first and bg.thread is not None
                    and bg.thread.is_alive())
        stop.wait(0)

    _in_thread(instance)
    assert seen == [[1], False, [2], True]


def test_the_background_thread_holds_no_step_once_done(patient: None) -> None:
    # (An unloaded model must not stay alive through the requests its thread last ran.)
    class Payload:
        pass

    holder = [Payload()]
    ref = weakref.ref(holder[0])
    bg = Background("fastserve-m-0")

    def instance() -> tuple[list[Any], bool, bool]:  # lives on while the checks run
        results = bg.run([lambda: type(holder.pop()).__name__])
        gc.collect()
        assert bg.thread is not None
        return results, bg.thread.is_alive(), ref() is None

    assert _in_thread(instance) == (["Payload"], True, True)
