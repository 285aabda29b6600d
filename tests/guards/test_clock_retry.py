from __future__ import annotations

import pytest
from fakes import FakeClock
from hypothesis import given
from hypothesis import strategies as st

from streamer.guards.retry import backoff_delays, retry_async


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(10.0)
    assert clock() == 10.0
    clock.advance(2.5)
    assert clock() == 12.5
    with pytest.raises(ValueError):
        clock.advance(-1.0)


class Flaky:
    """Fails ``failures`` times with ``error``, then returns "ok"."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("down")
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


async def test_retry_succeeds_after_failures_with_exponential_caps() -> None:
    fn, sleep = Flaky(3), Sleeps()
    result = await retry_async(fn, attempts=5, base_s=0.1, max_s=0.3, rng=lambda: 1.0, sleep=sleep)
    assert result == "ok"
    assert fn.calls == 4
    assert sleep.delays == pytest.approx([0.1, 0.2, 0.3])  # doubled, then capped at max_s


async def test_retry_gives_up_with_the_last_error() -> None:
    fn, sleep = Flaky(10), Sleeps()
    with pytest.raises(ConnectionError):
        await retry_async(fn, attempts=3, base_s=0.1, max_s=1.0, rng=lambda: 0.5, sleep=sleep)
    assert fn.calls == 3
    assert sleep.delays == pytest.approx([0.05, 0.1])  # full jitter: rng() * cap


async def test_retry_does_not_retry_other_errors() -> None:
    fn, sleep = Flaky(1, ValueError("bad input")), Sleeps()
    with pytest.raises(ValueError):
        await retry_async(fn, attempts=3, sleep=sleep, retry_on=(ConnectionError,))
    assert fn.calls == 1
    assert sleep.delays == []


async def test_retry_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError):
        await retry_async(Flaky(0), attempts=0, sleep=Sleeps())


@given(
    attempts=st.integers(1, 200),
    base_s=st.floats(0, 10),
    max_s=st.floats(0, 60),
    u=st.floats(0, 1, exclude_max=True),
)
def test_backoff_delays_are_full_jitter_within_the_cap(
    attempts: int, base_s: float, max_s: float, u: float
) -> None:
    delays = list(backoff_delays(attempts, base_s, max_s, rng=lambda: u))
    assert len(delays) == attempts - 1
    for i, delay in enumerate(delays):
        assert 0 <= delay <= min(max_s, base_s * 2.0**i if i < 64 else max_s)
