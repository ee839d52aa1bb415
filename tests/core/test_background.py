"""core.background: image decoding on a SCHED_IDLE thread beside the instance thread, which
decodes itself what that thread has not within the grace period."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import weakref
from collections import Counter
from functools import partial
from typing import Any

import pytest

from fastserve.core import background
from fastserve.core.background import Background, Step


def _can_idle() -> bool:
    """Whether this kernel lets a thread take SCHED_IDLE (a sandbox may refuse it)."""
    out: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            out.append(True)
        except (AttributeError, OSError):
            out.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return out[0]


def _in_thread(fn: Any, name: str = "fastserve-m-v1-0") -> Any:
    """fn() on a thread of its own, as an instance thread calls Background.run."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), name=name, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive() and out
    return out[0]


@pytest.fixture
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """No take-over: a box busy elsewhere may leave a SCHED_IDLE thread waiting a while."""
    monkeypatch.setattr(background, "GRACE", 60.0)


def _where() -> str:
    return threading.current_thread().name


def test_units_run_in_order_on_the_background_thread(patient: None) -> None:
    def unit(i: int) -> tuple[int, str, int]:
        policy = os.sched_getscheduler(0) if sys.platform == "linux" else -1
        return i, _where(), policy

    bg = Background()
    results = _in_thread(lambda: bg.run([partial(unit, i) for i in range(5)]))
    assert [r[0] for r in results] == [0, 1, 2, 3, 4]
    assert {r[1] for r in results} == {"fastserve-m-v1-0-background"}
    if sys.platform == "linux" and _can_idle():
        assert {r[2] for r in results} == {os.SCHED_IDLE}
        assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the caller's stays as it was


def test_a_units_exception_is_its_result_and_the_others_run(patient: None) -> None:
    def bad() -> None:
        raise ValueError("not an image")

    bg = Background()
    ok, err, ok2 = _in_thread(lambda: bg.run([lambda: 1, bad, lambda: 3]))
    assert (ok, ok2) == (1, 3)
    assert isinstance(err, ValueError) and str(err) == "not an image"
    assert _in_thread(lambda: bg.run([])) == []


def test_the_caller_runs_what_the_background_thread_has_not_finished() -> None:
    # The background thread stalls inside unit 0 (as a SCHED_IDLE thread does while other
    # threads keep the core busy): the caller runs every unit itself, waits for none.
    stalled, release = threading.Event(), threading.Event()
    runs: Counter[int] = Counter()

    def unit(i: int) -> str:
        runs[i] += 1
        if i == 0 and _where() == "idle":
            stalled.set()
            release.wait(30)
        return _where()

    step = Step([partial(unit, i) for i in range(4)])
    idle = threading.Thread(target=step.work, name="idle")
    idle.start()
    assert stalled.wait(30)
    results, in_time = step.results(0.0)
    assert (results, in_time) == (["MainThread"] * 4, False)
    release.set()
    idle.join(30)
    assert runs == {0: 2, 1: 1, 2: 1, 3: 1}  # only the unit it was inside ran twice
    assert step.left_by_background


def test_after_a_take_over_the_next_steps_do_not_wait_for_the_busy_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "GRACE", 0.05)
    stalled, release = threading.Event(), threading.Event()
    bg = Background()

    def instance() -> list[Any]:
        assert bg._started()
        blocker = Step([lambda: (stalled.set(), release.wait(30))])
        bg.steps.put(blocker)  # the background thread is busy with an earlier step
        assert stalled.wait(30)
        seen = [bg.run([_where, _where])]  # waits GRACE, then runs both here
        seen.append(bg.run([_where]))  # the thread still busy: run here, queue nothing
        seen.append(bg.steps.qsize())  # the step taken over waits there; not this one
        release.set()
        taken_over = bg.taken_over
        assert taken_over is not None
        for _ in range(3000):  # the background thread done with it, and free again
            if taken_over.left_by_background:
                break
            time.sleep(0.01)
        monkeypatch.setattr(background, "GRACE", 60.0)
        seen.append(bg.run([_where]))  # free again: the background thread decodes
        return seen

    assert _in_thread(instance) == [["fastserve-m-v1-0"] * 2, ["fastserve-m-v1-0"], 1,
                                    ["fastserve-m-v1-0-background"]]


def test_the_background_thread_ends_with_its_instance_thread(
        monkeypatch: pytest.MonkeyPatch, patient: None) -> None:
    monkeypatch.setattr(background, "POLL", 0.01)
    bg = Background()
    assert _in_thread(lambda: bg.run([lambda: 1])) == [1]
    assert bg.thread is not None
    bg.thread.join(30)  # a server's shutdown joins every thread: this one must end
    assert not bg.thread.is_alive()


def test_the_background_thread_holds_no_step_once_done(patient: None) -> None:
    # (An unloaded model must not stay alive through the requests its thread last ran.)
    class Payload:
        pass

    bg = Background()

    def instance() -> tuple[list[Any], bool, bool]:  # lives on while the checks run
        payload = Payload()
        ref = weakref.ref(payload)
        units = [partial(lambda p: type(p).__name__, payload)]
        del payload
        results = bg.run(units)
        del units
        deadline = time.monotonic() + 30  # until the background thread is back waiting
        while ref() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
            gc.collect()
        assert bg.thread is not None
        return results, ref() is None, bg.thread.is_alive()

    assert _in_thread(instance) == (["Payload"], True, True)


def test_no_thread_to_be_had_decodes_on_the_instance_thread(patient: None) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    bg = Background()

    def instance() -> list[Any]:
        start = threading.Thread.start
        threading.Thread.start = refuse  # type: ignore[method-assign]
        try:
            return bg.run([_where, _where])
        finally:
            threading.Thread.start = start  # type: ignore[method-assign]

    assert _in_thread(instance) == ["fastserve-m-v1-0"] * 2
    assert bg.thread is None
