"""Image decoding in the background: a SCHED_IDLE thread beside each image instance thread.

Decoding and preprocessing cost milliseconds an image. On a core that also serves short
tensor requests, even at niceness +10 that work delays them: the kernel (EEVDF) lets a
low-weight thread run whole slices while the event loop, back from a burst, waits its
turn (issue 14; docs/benchmarks.md, "Images beside tensors"). A SCHED_IDLE thread runs
only when no normal thread wants the core, so tensor clients do not wait for images.

Strict priority alone could starve images while tensors keep the core busy. So the
instance thread hands a step's units (decoding one request's images each) to its
background thread and waits; whatever is not done after ``GRACE`` seconds it decodes
itself, at its own priority (niceness +10): a step waits at most that long for idle
CPU. While the background thread is still inside a unit of a step so taken over, the
instance thread decodes the next steps itself at once. A unit may then run twice; the
first result in counts (decoding is pure).

The two threads share no Python lock: a SCHED_IDLE thread preempted while holding one
would hold up the instance thread for as long as other work keeps the core busy. Units
are claimed with next() on one range iterator and results come back on a SimpleQueue,
both C code under the GIL; only the instance thread decides which result counts.

Linux only (elsewhere, and where the kernel refuses SCHED_IDLE, the background thread
runs at the instance thread's priority).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

GRACE = 0.1  # seconds a step waits for idle CPU before its instance thread decodes
# (0.5 s gave saturated tensor clients no lower p99 and images 0.6x the rate: image_mix.py)
POLL = 0.2  # seconds between a waiting background thread's looks at its instance thread
_MISSING = object()


class Step:
    """One step's units, claimed one at a time by either thread."""

    def __init__(self, units: Sequence[Callable[[], Any]]) -> None:
        self.units = units
        self.claims = iter(range(len(units)))
        self.reports: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self.left_by_background = False

    def work(self) -> None:
        """The background thread's part: claim and run units until none is left."""
        for i in self.claims:
            self.reports.put((i, _run(self.units[i])))
        self.left_by_background = True

    def results(self, grace: float) -> tuple[list[Any], bool]:
        """The instance thread's part: each unit's result (or the exception it raised),
        in order, and whether the background thread answered them all within ``grace``;
        what it had not, this thread ran."""
        results = [_MISSING] * len(self.units)
        got, deadline = 0, time.monotonic() + grace
        while got < len(results):
            try:
                i, result = self.reports.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            results[i] = result
            got += 1
        if got == len(results):
            return results, True
        for i in self.claims:  # unclaimed: the background thread gets none of them now
            results[i] = _run(self.units[i])
        while True:  # answered meanwhile
            try:
                i, result = self.reports.get_nowait()
            except queue.Empty:
                break
            if results[i] is _MISSING:
                results[i] = result
        for i, result in enumerate(results):  # the one the background thread is inside
            if result is _MISSING:
                results[i] = _run(self.units[i])
        return results, False


def _run(unit: Callable[[], Any]) -> Any:
    try:
        return unit()
    except Exception as exc:  # the instance thread sorts the errors out
        return exc


class Background:
    """The background thread of one instance thread: started on its first step (from the
    instance thread, whose name it extends), ended once that thread has ended."""

    def __init__(self) -> None:
        self.steps: queue.SimpleQueue[Step] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.taken_over: Step | None = None  # the last step it did not finish in time

    def run(self, units: Sequence[Callable[[], Any]]) -> list[Any]:
        """Each unit's result (or the exception it raised), in order; called on the
        instance thread."""
        step = Step(units)
        if self.taken_over is not None and not self.taken_over.left_by_background:
            return step.results(0.0)[0]  # it is still busy: no waiting for it
        if not self._started():
            return step.results(0.0)[0]
        self.steps.put(step)
        results, in_time = step.results(GRACE)
        self.taken_over = None if in_time else step
        return results

    def _started(self) -> bool:
        if self.thread is not None and self.thread.is_alive():
            return True
        owner = threading.current_thread()
        thread = threading.Thread(target=_serve, args=(self.steps, owner), daemon=True,
                                  name=f"{owner.name}-background")
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: decode on the instance thread
            return False
        self.thread = thread
        return True


def _serve(steps: queue.SimpleQueue[Step], owner: threading.Thread) -> None:
    idle_priority()
    while owner.is_alive():
        try:
            step = steps.get(timeout=POLL)
        except queue.Empty:
            continue
        step.work()
        del step  # hold no request while waiting for the next


def idle_priority() -> None:
    """Make the calling thread SCHED_IDLE (Linux: per thread); elsewhere, or refused, it
    stays as it is."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or a sandbox
        pass
