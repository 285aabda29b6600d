from __future__ import annotations

import math

import pytest
from fakes import FakeClock
from hypothesis import given
from hypothesis import strategies as st

from streamer.guards.ratelimit import AudioPacer, TokenBucket


def test_bucket_starts_full_and_refuses_beyond_burst() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=3.0, clock=FakeClock())
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]


def test_bucket_refills_at_rate_and_caps_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=4.0, clock=clock)
    assert bucket.try_take(4.0)
    clock.advance(1.0)
    assert bucket.tokens == pytest.approx(2.0)
    clock.advance(3600.0)
    assert bucket.tokens == pytest.approx(4.0)


def test_refused_take_costs_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, burst=2.0, clock=clock)
    assert bucket.try_take(1.5)
    assert not bucket.try_take(1.0)
    assert bucket.tokens == pytest.approx(0.5)


def test_waiting_retry_after_is_exactly_enough() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=3.0, burst=5.0, clock=clock)
    assert bucket.try_take(5.0)
    wait = bucket.retry_after(2.0)
    assert wait == pytest.approx(2.0 / 3.0)
    clock.advance(wait * 0.99)
    assert not bucket.try_take(2.0)
    clock.advance(wait * 0.01)
    assert bucket.try_take(2.0)
    assert bucket.retry_after(0.0) == 0.0


def test_retry_after_is_infinite_beyond_the_burst() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=2.0, clock=FakeClock())
    assert math.isinf(bucket.retry_after(3.0))
    assert not bucket.try_take(3.0)


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (math.nan, 1.0), (1.0, math.inf)]
)
def test_bucket_rejects_nonsense(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, clock=FakeClock())


def test_bucket_rejects_negative_takes() -> None:
    with pytest.raises(ValueError):
        TokenBucket(1.0, 1.0, clock=FakeClock()).try_take(-1.0)


@given(
    rate=st.floats(0.1, 100),
    burst=st.floats(0.5, 100),
    ops=st.lists(st.tuples(st.floats(0, 10), st.floats(0, 20)), max_size=60),
)
def test_bucket_never_grants_more_than_burst_plus_refill(
    rate: float, burst: float, ops: list[tuple[float, float]]
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock)
    granted = 0.0
    for dt, n in ops:
        clock.advance(dt)
        if bucket.try_take(n):
            granted += n
    assert granted <= burst + rate * clock() + 1e-6


def test_pacer_admits_real_time_audio_forever() -> None:
    clock = FakeClock()
    pacer = AudioPacer(max_realtime_factor=2.0, burst_s=5.0, clock=clock)
    for _ in range(10_000):  # 1,000 s of 100 ms chunks, sent as they are recorded
        assert pacer.admit(0.1)
        clock.advance(0.1)


def test_pacer_admits_exactly_the_factor_sustained() -> None:
    clock = FakeClock()
    pacer = AudioPacer(max_realtime_factor=2.0, burst_s=5.0, clock=clock)
    assert pacer.admit(5.0)  # the whole burst at once
    for _ in range(1000):  # then 2x real time: 0.2 s of audio every 0.1 s
        clock.advance(0.1)
        assert pacer.admit(0.2)


def test_pacer_refuses_a_file_streamed_at_full_speed() -> None:
    clock = FakeClock()
    pacer = AudioPacer(max_realtime_factor=2.0, burst_s=5.0, clock=clock)
    admitted = 0.0
    for _ in range(600):  # 60 s of audio in 6 s of wall time: 10x real time
        if pacer.admit(0.1):
            admitted += 0.1
        clock.advance(0.01)
    assert admitted == pytest.approx(5.0 + 2.0 * 6.0, abs=0.2)
    while pacer.admit(0.1):  # drain what refilled during the last tick
        pass
    assert pacer.retry_after(0.1) > 0
    clock.advance(pacer.retry_after(0.1))
    assert pacer.admit(0.1)


def test_pacer_allows_catching_up_after_a_stall_up_to_the_burst() -> None:
    clock = FakeClock()
    pacer = AudioPacer(max_realtime_factor=1.5, burst_s=4.0, clock=clock)
    assert pacer.admit(4.0)
    clock.advance(60.0)  # the network stalls; the bucket refills only up to the burst
    assert pacer.available_s == pytest.approx(4.0)
    assert pacer.admit(4.0)
    assert not pacer.admit(0.5)
