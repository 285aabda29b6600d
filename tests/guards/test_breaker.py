from __future__ import annotations

import asyncio

import pytest
from fakes import FakeClock

from streamer.guards.breaker import BreakerOpenError, BreakerState, BreakerTimeoutError, CircuitBreaker


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, BreakerState]] = []

    def __call__(self, name: str, state: BreakerState) -> None:
        self.seen.append((name, state))


def make(clock: FakeClock, on_change: Changes | None = None, **kw: float) -> CircuitBreaker:
    threshold = int(kw.pop("failure_threshold", 3))
    return CircuitBreaker(
        "asr",
        failure_threshold=threshold,
        reset_timeout_s=kw.pop("reset_timeout_s", 10.0),
        call_timeout_s=kw.pop("call_timeout_s", None),
        clock=clock,
        on_change=on_change,
    )


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        assert breaker.allow()
        breaker.record_failure()


async def ok() -> str:
    return "ok"


async def boom() -> str:
    raise RuntimeError("model crashed")


def test_closed_allows_and_success_resets_the_count(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(10):  # failures that are not consecutive never open it
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
        assert breaker.failures == 0
        assert breaker.allow()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.opened_at is None
    assert breaker.retry_after() == 0.0


def test_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    changes = Changes()
    breaker = make(clock, changes)
    states = []
    for _ in range(3):
        states.append(breaker.state)
        breaker.record_failure()
    assert states == [BreakerState.CLOSED] * 3
    assert breaker.state is BreakerState.OPEN
    assert breaker.opened_at == clock()
    assert not breaker.allow()
    assert changes.seen == [("asr", BreakerState.OPEN)]


async def test_open_fails_fast_without_calling(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(4.0)
    called = False

    async def never() -> str:
        nonlocal called
        called = True
        return "x"

    with pytest.raises(BreakerOpenError) as info:
        await breaker.call(never)
    assert not called
    assert info.value.name == "asr"
    assert info.value.retry_after == pytest.approx(6.0)


def test_half_open_lets_exactly_one_probe_through(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(9.999)
    assert not breaker.allow()
    clock.advance(0.001)
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert [breaker.allow() for _ in range(5)] == [False] * 5


def test_probe_success_closes(clock: FakeClock) -> None:
    changes = Changes()
    breaker = make(clock, changes)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == 0
    assert breaker.opened_at is None
    assert all(breaker.allow() for _ in range(5))
    assert [s for _, s in changes.seen] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_probe_failure_reopens_for_a_full_timeout(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(12.0)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.opened_at == clock()
    assert breaker.retry_after() == pytest.approx(10.0)
    assert not breaker.allow()
    clock.advance(10.0)
    assert breaker.allow()


def test_state_reads_half_open_once_the_timeout_passed(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN  # readiness probes see recovery without traffic
    assert breaker.allow()


def test_a_lost_probe_is_replaced_after_the_reset_timeout(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()  # this probe never reports back
    clock.advance(9.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()


def test_reset_closes_an_open_breaker(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == 0
    assert breaker.allow()


async def test_call_records_success_and_failure(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=2)
    assert await breaker.call(ok) == "ok"
    with pytest.raises(RuntimeError):
        await breaker.call(boom)
    assert breaker.failures == 1
    with pytest.raises(RuntimeError):
        await breaker.call(boom)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(BreakerOpenError):
        await breaker.call(ok)


async def test_call_probe_success_closes(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    with pytest.raises(RuntimeError):
        await breaker.call(boom)
    clock.advance(10.0)
    assert await breaker.call(ok) == "ok"
    assert breaker.state is BreakerState.CLOSED


async def test_timeout_counts_as_failure(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1, call_timeout_s=0.01)

    async def hang() -> str:
        await asyncio.Event().wait()  # never set
        return "unreachable"

    with pytest.raises(BreakerTimeoutError) as info:
        await breaker.call(hang)
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout_s == 0.01
    assert breaker.state is BreakerState.OPEN
    assert breaker.failures == 1


async def test_cancelled_probe_frees_the_half_open_slot(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    breaker.record_failure()
    clock.advance(10.0)
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.Event().wait()
        return "unreachable"

    probe = asyncio.create_task(breaker.call(slow))
    await started.wait()
    assert not breaker.allow()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is BreakerState.HALF_OPEN  # cancelling is not the dependency's failure
    assert breaker.allow()


@pytest.mark.parametrize("kw", [{"failure_threshold": 0}, {"reset_timeout_s": -1.0}, {"call_timeout_s": 0.0}])
def test_breaker_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", **kw)  # type: ignore[arg-type]
