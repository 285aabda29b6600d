"""MicroBatcher: real threads and real time, but the model is a recording fake and waits are tiny.

Where order or coalescing matters, the fake model is held on a ``threading.Event`` so that jobs pile up
behind a running batch deterministically, and tests wait for the queue to reach a state (``until``)
rather than sleeping for it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

import pytest
from fakes import FakeClock

from streamer.errors import ModelUnavailableError
from streamer.guards.breaker import BreakerState, CircuitBreaker
from streamer.pipeline.batcher import BatchStats, MicroBatcher
from streamer.pipeline.calibration import CpuShare

KEY = ("transcribe", "en")


class Model:
    """A fake ``run_batch``: records every call; ``gate`` holds calls; ``fail`` raises."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[Hashable, list[Any]]] = []
        self.delay = delay
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, key: Hashable, payloads: list[Any]) -> list[str]:
        self.calls.append((key, list(payloads)))
        self.entered.set()
        if not self.gate.wait(10):
            raise RuntimeError("the test never opened the gate")
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model exploded")
        return [f"r:{p}" for p in payloads]

    async def hold(self, batcher: MicroBatcher[Any, str]) -> asyncio.Task[str]:
        """Start a batch and keep it running until ``gate.set()``; returns the blocked job's task."""
        self.gate.clear()
        self.entered.clear()
        task = asyncio.create_task(batcher.submit_final("holder", KEY, "hold"))
        assert await asyncio.to_thread(self.entered.wait, 5), "the holding batch never started"
        return task


Factory = Callable[..., MicroBatcher[Any, str]]


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the batcher never reached the expected state"
        await asyncio.sleep(0.002)


@pytest.fixture
async def make_batcher() -> AsyncIterator[Factory]:
    made: list[tuple[MicroBatcher[Any, str], Any]] = []

    def factory(run_batch: Model, **options: Any) -> MicroBatcher[Any, str]:
        options.setdefault("max_wait_s", 0.005)
        batcher: MicroBatcher[Any, str] = MicroBatcher("test", run_batch, **options)
        batcher.start()
        made.append((batcher, run_batch))
        return batcher

    yield factory
    for batcher, model in made:
        model.gate.set()  # a test that failed mid-hold must not leave the thread stuck
        await batcher.stop()


async def test_concurrent_finals_share_model_calls(make_batcher: Factory) -> None:
    model = Model(delay=0.05)
    batcher = make_batcher(model, max_batch=8)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit_final(f"s{i}", KEY, i) for i in range(16))), 5
    )
    assert results == [f"r:{i}" for i in range(16)]  # each caller gets its own result
    sizes = [len(p) for _, p in model.calls]
    assert sum(sizes) == 16 and max(sizes) <= 8
    assert len(model.calls) <= 3, sizes  # 16 jobs, 8 per call: two calls, three at worst
    assert batcher.finals_pending == 0


async def test_results_are_routed_by_job_across_keys(make_batcher: Factory) -> None:
    model = Model()
    batcher = make_batcher(model, max_batch=4)
    holder = await model.hold(batcher)
    jobs = [(f"s{i}", KEY if i % 2 else ("translate", None), f"job{i}") for i in range(7)]
    tasks = [asyncio.create_task(batcher.submit_final(s, k, p)) for s, k, p in jobs]
    await until(lambda: batcher.depth == (7, 0))  # all queued behind the held batch
    model.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == [f"r:job{i}" for i in range(7)]
    assert await holder == "r:hold"
    for key, payloads in model.calls[1:]:
        assert {int(p[3:]) % 2 for p in payloads} == ({1} if key == KEY else {0})  # one key per call


async def test_finals_go_before_partials_within_a_call(make_batcher: Factory) -> None:
    model = Model()
    batcher = make_batcher(model, max_batch=8)
    holder = await model.hold(batcher)
    partial = batcher.submit_partial("p", KEY, "partial", stale_after=10.0)
    final = asyncio.create_task(batcher.submit_final("f", KEY, "final"))
    await until(lambda: batcher.depth == (1, 1))
    model.gate.set()
    assert await asyncio.wait_for(final, 5) == "r:final"
    assert await asyncio.wait_for(partial, 5) == "r:partial"
    await holder
    assert model.calls[1][1] == ["final", "partial"]


async def test_coalesced_partial_resolves_to_none(make_batcher: Factory) -> None:
    drops: list[str] = []
    model = Model()
    batcher = make_batcher(model, on_drop=drops.append)
    holder = await model.hold(batcher)
    old = batcher.submit_partial("s", KEY, "old", stale_after=10.0)
    new = batcher.submit_partial("s", KEY, "new", stale_after=10.0)
    assert await asyncio.wait_for(old, 1) is None  # replaced before it ran
    assert batcher.depth == (0, 1)
    model.gate.set()
    assert await asyncio.wait_for(new, 5) == "r:new"
    await holder
    assert drops == ["coalesced"]
    assert all("old" not in payloads for _, payloads in model.calls)


async def test_stale_partial_is_dropped_not_run(make_batcher: Factory) -> None:
    drops: list[str] = []
    model = Model()
    batcher = make_batcher(model, on_drop=drops.append)
    holder = await model.hold(batcher)
    stale = batcher.submit_partial("s", KEY, "late", stale_after=0.05)
    await asyncio.sleep(0.1)
    model.gate.set()
    assert await asyncio.wait_for(stale, 5) is None
    await holder
    await until(lambda: bool(drops))  # on_drop is posted by the model thread after the result
    assert drops == ["stale"] and len(model.calls) == 1


async def test_discarded_partial_resolves_to_none(make_batcher: Factory) -> None:
    model = Model()
    batcher = make_batcher(model)
    holder = await model.hold(batcher)
    fut = batcher.submit_partial("s", KEY, "p", stale_after=10.0)
    batcher.discard_partial("s")
    assert await asyncio.wait_for(fut, 1) is None
    batcher.discard_partial("nobody")  # harmless
    model.gate.set()
    await holder
    assert len(model.calls) == 1


async def test_pending_finals_are_bounded(make_batcher: Factory) -> None:
    model = Model()
    batcher = make_batcher(model, max_batch=2, max_pending_finals=4)
    holder = await model.hold(batcher)  # holds one slot
    tasks = [asyncio.create_task(batcher.submit_final(f"s{i}", KEY, i)) for i in range(10)]
    await until(lambda: batcher.finals_pending == 4)
    await asyncio.sleep(0.05)  # and it stays there
    assert batcher.finals_pending == 4
    assert batcher.depth[0] == 3  # the rest wait for a slot, outside the queue
    model.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == [f"r:{i}" for i in range(10)]
    await holder
    assert batcher.finals_pending == 0 and batcher.depth == (0, 0)


async def test_batch_stats_and_latency_are_reported(make_batcher: Factory) -> None:
    stats: list[BatchStats] = []
    model = Model(delay=0.02)
    batcher = make_batcher(model, on_batch=stats.append)
    assert batcher.calls.latency_ewma_s == 0.0 and batcher.calls.last_batch_at == 0.0
    await asyncio.wait_for(asyncio.gather(*(batcher.submit_final(f"s{i}", KEY, i) for i in range(3))), 5)
    await until(lambda: sum(s.size for s in stats) == 3)  # posted by the model thread after the results
    assert sum(s.size for s in stats) == 3 and all(s.finals == s.size for s in stats)
    assert all(s.seconds >= 0.02 for s in stats)
    assert batcher.calls.latency_ewma_s >= 0.3 * 0.02
    assert time.monotonic() - batcher.calls.last_batch_at < 1.0
    assert batcher.utilization() > 0


class ExtraResult(Model):
    def __call__(self, key: Hashable, payloads: list[Any]) -> list[str]:
        return [*super().__call__(key, payloads), "one too many"]


async def test_wrong_number_of_results_fails_the_jobs(make_batcher: Factory) -> None:
    batcher = make_batcher(ExtraResult())
    with pytest.raises(ModelUnavailableError):
        await asyncio.wait_for(batcher.submit_final("s", KEY, "x"), 5)


async def test_failures_open_the_breaker_then_a_probe_closes_it(make_batcher: Factory) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("asr", failure_threshold=2, reset_timeout_s=10.0, clock=clock)
    model = Model()
    model.fail = True
    batcher = make_batcher(model, breaker=breaker)

    for _ in range(2):
        with pytest.raises(ModelUnavailableError) as err:
            await asyncio.wait_for(batcher.submit_final("s", KEY, "x"), 5)
        assert err.value.code == "model_unavailable" and err.value.retryable
    assert breaker.state is BreakerState.OPEN and len(model.calls) == 2

    # open: refused without calling the model, with a hint of when to come back
    model.fail = False
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as err:
        await asyncio.wait_for(batcher.submit_final("s", KEY, "x"), 5)
    assert time.monotonic() - started < 0.5
    assert err.value.retry_after == pytest.approx(10.0)
    assert len(model.calls) == 2

    # after the reset timeout one probe goes through; its success closes the breaker
    clock.advance(10.0)
    assert await asyncio.wait_for(batcher.submit_final("s", KEY, "probe"), 5) == "r:probe"
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert await asyncio.wait_for(batcher.submit_final("s", KEY, "after"), 5) == "r:after"


async def test_a_failed_probe_opens_the_breaker_again(make_batcher: Factory) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("asr", failure_threshold=1, reset_timeout_s=10.0, clock=clock)
    model = Model()
    model.fail = True
    batcher = make_batcher(model, breaker=breaker)
    with pytest.raises(ModelUnavailableError):
        await asyncio.wait_for(batcher.submit_final("s", KEY, "x"), 5)
    clock.advance(10.0)
    with pytest.raises(ModelUnavailableError):
        await asyncio.wait_for(batcher.submit_final("s", KEY, "probe"), 5)
    assert breaker.state is BreakerState.OPEN and len(model.calls) == 2


async def test_watchdog_fails_a_hung_batch(make_batcher: Factory) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("asr", failure_threshold=1, reset_timeout_s=10.0, clock=clock)
    model = Model()
    call_timeout, period = 0.3, 0.05
    batcher = make_batcher(model, call_timeout_s=call_timeout, breaker=breaker)
    watchdog = asyncio.create_task(batcher.watchdog(period_s=period))
    try:
        model.gate.clear()
        started = time.monotonic()
        hung = asyncio.create_task(batcher.submit_final("s", KEY, "hung"))
        assert await asyncio.to_thread(model.entered.wait, 5)
        queued = asyncio.create_task(batcher.submit_final("t", KEY, "queued"))
        with pytest.raises(ModelUnavailableError):
            await asyncio.wait_for(hung, call_timeout + 2)
        elapsed = time.monotonic() - started
        assert call_timeout <= elapsed <= call_timeout + period + 0.25, elapsed
        with pytest.raises(ModelUnavailableError):  # queued behind it: failed too, not left waiting
            await asyncio.wait_for(queued, 0.5)
        assert batcher.hung and breaker.state is BreakerState.OPEN
        # while the call is stuck, new work fails at once
        with pytest.raises(ModelUnavailableError):
            await asyncio.wait_for(batcher.submit_final("u", KEY, "new"), 0.1)
        assert await asyncio.wait_for(batcher.submit_partial("u", KEY, "p", stale_after=1.0), 0.1) is None
        assert batcher.finals_pending == 0

        # the stuck call returns at last: the batcher recovers, the breaker stays open (a late success)
        model.gate.set()
        await until(lambda: not batcher.hung)
        assert breaker.state is BreakerState.OPEN
        clock.advance(10.0)
        assert await asyncio.wait_for(batcher.submit_final("s", KEY, "again"), 5) == "r:again"
    finally:
        watchdog.cancel()
        model.gate.set()


async def test_on_a_shared_cpu_the_workers_are_worth_less_than_one_call_alone_each(
    make_batcher: Factory,
) -> None:
    """Two busy processes beside two workers on two cores: a call alone gets 2/3 of a core, two at once
    half a core each, so the snapshot admission reads counts the two workers as 1.5 calls alone."""
    now = [0.0]
    # the server idle, two other threads runnable all along (100 s of samples)
    cpu = CpuShare(2, read_machine=lambda: 2.0, read_runnable=lambda: 0.0, clock=lambda: now[0])
    for _ in range(200):
        now[0] += 0.5
        cpu.sample()
    batcher = make_batcher(Model(), workers=2, cpu=cpu)
    assert batcher.snapshot().cores == pytest.approx(1.5, abs=0.001)


async def test_without_a_cpu_reading_every_worker_counts_as_a_core(make_batcher: Factory) -> None:
    batcher = make_batcher(Model(), workers=2)
    assert batcher.snapshot().cores is None
