"""When an unbatched model's job runs on the event loop rather than its instance thread.

A job handed to an instance thread pays the whole hop, however few requests it holds
(SimpleQueue, a thread wake-up, the GIL handed over twice, ``call_soon_threadsafe``):
~30 µs of CPU, twice the forward of a small model (benchmarks/infer_breakdown.py:
64→256→10 MLP, ~15 µs). A small enough job of such a model runs where it was formed,
at once, as the thread would run it (same job, bookkeeping and statistics). The rule
keeps the loop from ever being blocked long, and applies only where it pays:

- only a model that does not batch (max_batch_size 0) and has one instance (several ask
  for runs in parallel: they keep their threads), on a backend that says its ``infer``
  may run on any thread (``loop_safe``: the torch backend on CPU);
- only once at least ``LEARN_RUNS`` of its requests ran on its thread and the fastest of
  them took under ``INLINE_BELOW`` (the fastest: a busy box, a cold first run or a wait
  for the GIL only add to what the model costs; until then every run on the thread is
  timed, so a model whose first runs were slow still qualifies later);
- only a job whose requests, at that cost each, add up to ``INLINE_BELOW`` at most: a
  lone request (one client, or a loop turn that read one request), or a few. The many
  requests read in one loop turn under load stay one group on the thread, one hop for
  all, each stage of the request path running back to back with its code and data in
  cache (32 in flight: every request run on the loop as it came cost ~86 µs a request,
  ~60 through the thread);
- only requests whose inputs are no larger than the fastest run's, scaled by how far it
  was under the threshold (at most ``MAX_GROWTH`` times);
- ``SLOW_RUNS`` runs in a row on the loop that each took over ``2 * INLINE_BELOW`` (a
  slow input, a loaded box; one alone may be a preempted run) send the model's jobs
  back to its thread for ``PAUSE`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .jobs import SKIPPED, Group, Item, Run

INLINE_BELOW = 50e-6  # s: a model whose fastest learned run is under this may run inline
LEARN_RUNS = 16  # runs on the thread timed before deciding
MAX_GROWTH = 4  # times the fastest run's input bytes a request may have at most
SLOW_RUNS = 4  # runs in a row on the loop over 2 * INLINE_BELOW that pause it
PAUSE = 1.0  # s on the thread after them


class InlineRule:
    """The rule for one model version (``for_model``: None when it never applies)."""

    __slots__ = ("policy", "learned", "best", "best_bytes", "most_bytes", "off_until", "slow")

    def __init__(self, policy: Any) -> None:
        self.policy = policy  # the model's tensor policy: only its requests run inline
        self.learned = 0  # runs timed so far (at least LEARN_RUNS before deciding)
        self.best = float("inf")  # the fastest of them, s
        self.best_bytes = 0  # its input bytes
        self.most_bytes = -1  # the largest request that may run on the loop (-1: none)
        self.off_until = float("-inf")
        self.slow = 0  # runs on the loop in a row that took over 2 * INLINE_BELOW

    @classmethod
    def for_model(cls, backend: Any, max_batch_size: int, instances: int, policy: Any
                  ) -> InlineRule | None:
        if not getattr(backend, "loop_safe", False) or max_batch_size > 0 or instances != 1:
            return None
        return cls(policy)

    def takes(self, job: Group, now: float) -> bool:
        """Whether ``job`` (a group just formed) runs on the loop now."""
        if now < self.off_until or len(job) * self.best > INLINE_BELOW:
            return False
        for item in job:
            if item.policy is not self.policy or _nbytes(item) > self.most_bytes:
                return False
        return True

    def learn(self, job: Group, results: list[Any], runs: list[Run]) -> None:
        """Time the runs of a job its thread ran (until the model qualifies)."""
        ran = [item for item, result in zip(job, results, strict=True) if result is not SKIPPED]
        for item, (_, seconds, _) in zip(ran, runs, strict=True):
            if item.policy is self.policy:
                self.learned += 1
                if seconds < self.best:
                    self.best, self.best_bytes = seconds, _nbytes(item)
        if self.learned >= LEARN_RUNS and self.best < INLINE_BELOW:
            growth = min(INLINE_BELOW / self.best if self.best > 0 else MAX_GROWTH, MAX_GROWTH)
            self.most_bytes = int(self.best_bytes * growth)

    def run(self, job: Group, model: str, now: float, stale: Callable[[Item], bool],
            complete: Callable[..., None], crashed: Callable[..., None]) -> None:
        """Run ``job`` on the loop as its instance thread would (core/instances.py), then
        ``complete(job, results, runs)``, or ``crashed(job, exc)``."""
        try:
            results, runs = job.execute(model, 0, stale)
        except Exception as exc:  # a bug: as a crash of the instance thread
            crashed(job, exc)
            return
        if sum(run[1] for run in runs) > 2 * INLINE_BELOW:  # blocked the loop too long
            self.slow += 1
            if self.slow >= SLOW_RUNS:  # not a one-off (a preempted run): pause
                self.slow, self.off_until = 0, now + PAUSE
        else:
            self.slow = 0
        complete(job, results, runs)


def _nbytes(item: Item) -> int:
    return sum(arr.nbytes for arr in item.inputs.values())
