"""Image work in the background: a SCHED_IDLE thread beside each image instance thread.

Decoding and running image requests costs milliseconds a request. On a core that also
serves short tensor requests, even at niceness +10 that work delays them: the kernel
(EEVDF) lets a low-weight thread run whole slices while the event loop, back from a
burst, waits its turn (issue 14; docs/benchmarks.md, "Images beside tensors"). A
SCHED_IDLE thread runs only when no normal thread wants the core, so tensor clients do
not wait for images at all.

Strict priority alone could starve images while tensors keep the core busy. So the
instance thread hands a step's units (decoding one request's images each) to its
background thread and waits; if they are not all done after ``GRACE`` seconds, it runs
the unfinished ones itself, at its own priority (niceness +10): an image step waits at
most that long for idle CPU. The model run stays on the instance thread (at niceness
+10, as before): it is not safe to run twice, and it competes with other models' runs as
any model run does.

Linux only (elsewhere, and where the kernel refuses SCHED_IDLE, the background thread
runs at the instance thread's priority).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

GRACE = 0.5  # seconds a step waits for idle CPU before its instance thread helps
IDLE_EXIT = 30.0  # seconds without work after which a background thread ends
POLL = 0.2  # seconds between a waiting background thread's looks at its instance thread


class Units:
    """One step's units: the background thread takes them in order; once the grace period
    is over, the instance thread runs every one not finished yet, the one the background
    thread is in the middle of included (a SCHED_IDLE thread may not get the core back
    while tensors keep it busy), so it never waits for it. A unit may then run twice;
    the first result in counts (units are pure: decoding an image)."""

    def __init__(self, units: Sequence[Callable[[], Any]]) -> None:
        self.units = units
        self.results: list[Any] = [None] * len(units)
        self.finished = [False] * len(units)
        self.taken = 0
        self.left = len(units)
        self.lock = threading.Lock()
        self.done = threading.Event()
        if not units:
            self.done.set()

    def work(self) -> None:
        """The background thread's part: units in order, until none is left to take."""
        while True:
            with self.lock:
                i = self.taken
                if i == len(self.units):
                    return
                self.taken = i + 1
            self._run(i)

    def take_over(self) -> None:
        """The instance thread's part, once the grace period is over: every unit not
        finished, with none left for the background thread to start."""
        with self.lock:
            self.taken = len(self.units)
        for i, finished in enumerate(self.finished):
            if not finished:
                self._run(i)

    def _run(self, i: int) -> None:
        try:
            result = self.units[i]()
        except BaseException as exc:  # the instance thread re-raises what is not its own
            result = exc
        with self.lock:
            if self.finished[i]:
                return
            self.results[i] = result
            self.finished[i] = True
            self.left -= 1
            if not self.left:
                self.done.set()


class Background:
    """The background thread of one instance thread: started on its first step, ended
    when the instance thread has ended (a server's shutdown joins every thread) or after
    IDLE_EXIT seconds without a step."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps: queue.SimpleQueue[Units] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def run(self, units: Sequence[Callable[[], Any]]) -> list[Any]:
        """Each unit's result (or the exception it raised), in order; called on the
        instance thread, which helps once GRACE has passed."""
        step = Units(units)
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=_serve,
                                           args=(self.steps, threading.current_thread()),
                                           name=f"{self.name}-background", daemon=True)
            self.thread.start()
        self.steps.put(step)
        if not step.done.wait(GRACE):
            step.take_over()
        return step.results


def _serve(steps: queue.SimpleQueue[Units], owner: threading.Thread) -> None:
    idle_priority()
    idle = 0.0
    while owner.is_alive() and idle < IDLE_EXIT:
        try:
            step = steps.get(timeout=POLL)
        except queue.Empty:
            idle += POLL
            continue
        step.work()
        del step  # hold no request (nor, through it, a model) while waiting
        idle = 0.0


def idle_priority() -> None:
    """Make the calling thread SCHED_IDLE (Linux: per thread); elsewhere, or refused, it
    stays as it is."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or a sandbox
        pass
