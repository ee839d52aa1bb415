"""Small jobs of a cheap unbatched model run on the event loop (core/inline.py): the same
answers, errors and statistics as on the instance thread, only where the rule allows."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from fastserve.core import inline
from fastserve.core.inline import INLINE_BELOW, LEARN_RUNS, InlineRule
from fastserve.core.jobs import Group, Item
from fastserve.errors import BackendError, DeadlineExceededError


def loop_safe(backend: Any) -> Any:
    backend.loop_safe = True  # as the torch backend on CPU says of itself
    return backend


def x_of(value: float) -> dict[str, np.ndarray]:
    return {"x": np.full((1, 3), value, dtype=np.float32)}


def check(outputs: dict[str, np.ndarray], value: float) -> None:
    x = x_of(value)["x"]
    np.testing.assert_array_equal(outputs["y"], x * 2 + 1)
    np.testing.assert_array_equal(outputs["s"], x.sum())


async def learn(batcher: Any) -> None:
    """The first LEARN_RUNS requests, one at a time (they run on the thread)."""
    for i in range(LEARN_RUNS):
        check(await batcher.submit(x_of(i + 0.5), 1), i + 0.5)


def test_lone_requests_run_on_the_loop_once_learned(run_async, new_batcher,
                                                    fake_backend) -> None:
    backend = loop_safe(fake_backend(batched=False))
    box: list[Any] = []

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0)
        box.append(batcher)
        await learn(batcher)
        assert threading.current_thread().name not in backend.threads  # all on the thread
        for i in range(20):
            check(await batcher.submit(x_of(100.0 + i), 1), 100.0 + i)

    run_async(main)
    batcher = box[0]
    assert threading.current_thread().name in backend.threads
    assert len(backend.calls) == LEARN_RUNS + 20  # each request ran once
    stats = batcher.stats
    assert stats.success == LEARN_RUNS + 20 and stats.fail == 0
    assert stats.execution_count == LEARN_RUNS + 20 and batcher.queue_depth == 0


def test_requests_read_together_still_go_to_the_thread_as_one_group(
        run_async, new_batcher, fake_backend) -> None:
    backend = loop_safe(fake_backend(batched=False))

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0)
        await learn(batcher)
        backend.threads.clear()
        values = [float(v) for v in range(32)]
        results = await asyncio.gather(*(batcher.submit(x_of(v), 1) for v in values))
        for v, outputs in zip(values, results, strict=True):
            check(outputs, v)
        assert threading.current_thread().name not in backend.threads

    run_async(main)


def test_a_model_error_on_the_loop_fails_that_request_alone(run_async, new_batcher,
                                                          fake_backend) -> None:
    backend = loop_safe(fake_backend(batched=False, fail_marker=13.0))
    box: list[Any] = []

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0)
        box.append(batcher)
        await learn(batcher)
        try:
            await batcher.submit(x_of(13.0), 1)
        except BackendError as exc:
            assert "ValueError" in str(exc) and "13" in str(exc)
        else:
            raise AssertionError("the failing request was answered")
        check(await batcher.submit(x_of(2.0), 1), 2.0)  # the model still serves

    run_async(main)
    assert threading.current_thread().name in backend.threads
    assert box[0].stats.fail == 1 and box[0].stats.success == LEARN_RUNS + 1


def test_expired_requests_are_not_run_on_the_loop_either(run_async, new_batcher,
                                                        fake_backend, fake_clock) -> None:
    backend = loop_safe(fake_backend(batched=False))

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=0, timeout_ms=10.0)
        await learn(batcher)
        future = batcher.submit(x_of(7.0), 1)
        fake_clock.advance(0.05)  # past timeout_ms before its dispatch
        try:
            await future
        except DeadlineExceededError:
            pass
        else:
            raise AssertionError("an expired request was run")
        assert not backend.seen(7.0)

    run_async(main)


def test_the_rule_applies_only_to_one_instance_unbatched_loop_safe_models(fake_backend
                                                                          ) -> None:
    safe = loop_safe(fake_backend(batched=False))
    assert InlineRule.for_model(safe, 0, 1, object()) is not None
    assert InlineRule.for_model(safe, 8, 1, object()) is None  # batches: its own rule
    assert InlineRule.for_model(safe, 0, 2, object()) is None  # runs in parallel
    assert InlineRule.for_model(fake_backend(batched=False), 0, 1, object()) is None


def group(policy: Any, *sizes: int) -> Group:
    return Group(Item({"x": np.zeros(n, dtype=np.uint8)}, 1, _Policy(policy), 0.0)
                 for n in sizes)


class _Policy:
    grouped = True

    def __init__(self, same_as: Any) -> None:
        self.same = same_as

    def key(self, inputs: Any) -> None:
        return None


def learned_rule(seconds: float, nbytes: int = 100) -> tuple[InlineRule, Any]:
    rule = InlineRule(policy := object())
    job = group(policy, *[nbytes] * LEARN_RUNS)
    for item in job:
        item.policy = policy
    rule.learn(job, [{}] * len(job), [(1, seconds, 1)] * len(job))
    return rule, policy


def test_a_model_slower_than_the_threshold_never_runs_on_the_loop() -> None:
    rule, policy = learned_rule(2 * INLINE_BELOW)
    job = group(policy, 100)
    job[0].policy = policy
    assert rule.learned == LEARN_RUNS and not rule.takes(job, 0.0)


def test_only_small_jobs_of_small_requests_run_on_the_loop() -> None:
    rule, policy = learned_rule(INLINE_BELOW / 10, nbytes=100)

    def of(*sizes: int) -> Group:
        job = group(policy, *sizes)
        for item in job:
            item.policy = policy
        return job

    assert rule.takes(of(100), 0.0)
    assert rule.takes(of(400), 0.0)  # up to MAX_GROWTH times the timed request
    assert not rule.takes(of(401), 0.0)
    assert rule.takes(of(*[100] * 10), 0.0)  # 10 runs of a tenth of the threshold
    assert not rule.takes(of(*[100] * 11), 0.0)
    assert not rule.takes(group(object(), 100), 0.0)  # another policy's request (images)


def test_slow_runs_in_a_row_send_the_model_back_to_its_thread() -> None:
    rule, policy = learned_rule(INLINE_BELOW / 10)
    done: list[Any] = []

    class SlowJob(Group):
        def execute(self, model: str, instance: int, stale: Any) -> Any:
            return [{}], [(1, 3 * INLINE_BELOW, 1)]

    job = SlowJob(group(policy, 100))
    job[0].policy = policy
    for _ in range(inline.SLOW_RUNS - 1):
        rule.run(job, "m", 5.0, lambda item: False, lambda *a: done.append(a), None)  # type: ignore[arg-type]
        assert rule.takes(job, 5.0)  # a one-off: still on the loop
    rule.run(job, "m", 5.0, lambda item: False, lambda *a: done.append(a), None)  # type: ignore[arg-type]
    assert len(done) == inline.SLOW_RUNS  # every job was answered
    assert not rule.takes(job, 5.0) and not rule.takes(job, 5.0 + inline.PAUSE - 0.01)
    assert rule.takes(job, 5.0 + inline.PAUSE)


def test_a_model_whose_first_runs_were_slow_qualifies_once_a_fast_run_is_seen() -> None:
    rule, policy = learned_rule(3 * INLINE_BELOW)  # cold first runs, a busy box
    job = group(policy, 100)
    job[0].policy = policy
    assert rule.most_bytes < 0 and not rule.takes(job, 0.0)
    rule.learn(job, [{}], [(1, INLINE_BELOW / 4, 1)])  # a later run on the thread
    assert rule.takes(job, 0.0)
