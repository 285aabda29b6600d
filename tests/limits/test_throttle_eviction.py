"""The failed-authentication throttle keeps a bounded table of addresses: filling it must not buy a
throttled address fresh guesses (issue 23, item 11). Pure: an injected clock, no server, no sleeping."""

from __future__ import annotations

import pytest
from fakes import FakeClock

from streamer.guards import ratelimit
from streamer.guards.admission import MAX_RATE_BUCKETS, Admission, AdmissionLimits, Refusal

PER_MIN = 10.0


def _admission(clock: FakeClock, **kwargs: int) -> Admission:
    limits = AdmissionLimits(
        max_sessions=10,
        saturation_latency_s=1.0,
        session_rate_per_key_per_min=0,
        auth_failures_per_min=PER_MIN,
    )
    return Admission(limits, clock, **kwargs)


def _throttle(admission: Admission, address: str) -> None:
    for _ in range(int(PER_MIN)):
        admission.record_auth_failure(address)
    with pytest.raises(Refusal):
        admission.check_auth_failures(address)


def test_a_throttled_address_stays_throttled_when_the_table_fills_with_others() -> None:
    clock = FakeClock()
    admission = _admission(clock)
    _throttle(admission, "203.0.113.7")
    for n in range(MAX_RATE_BUCKETS):  # 10,000 other addresses fail once each
        admission.record_auth_failure(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    with pytest.raises(Refusal) as refused:
        admission.check_auth_failures("203.0.113.7")
    assert refused.value.error.code == "auth_rate_limited"


def test_a_table_full_of_throttled_addresses_refuses_new_ones_until_one_refills() -> None:
    clock = FakeClock()
    admission = _admission(clock, max_buckets=3)
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        _throttle(admission, address)
        clock.advance(1.0)
    # an address the table cannot hold could not be throttled: refused, for as long as the table is full
    with pytest.raises(Refusal) as refused:
        admission.check_auth_failures("198.51.100.9")
    wait = refused.value.error.retry_after
    assert wait is not None and 0 < wait <= 60 / PER_MIN
    clock.advance(wait)
    admission.check_auth_failures("198.51.100.9")  # the oldest has a try again: room for a new name
    admission.record_auth_failure("198.51.100.9")
    for address in ("192.0.2.2", "192.0.2.3"):  # the others were not forgotten
        with pytest.raises(Refusal):
            admission.check_auth_failures(address)


def test_a_full_table_forgets_full_then_the_longest_idle_unthrottled_buckets() -> None:
    clock = FakeClock()
    table = ratelimit.BucketTable(PER_MIN / 60, PER_MIN, max_size=10, clock=clock)
    names = ["t", "z", "y", "x", "w", "v", "u", "s", "r", "q"]  # oldest first; not in name order
    for name in names:
        bucket = table.bucket(name)
        assert bucket is not None
        bucket.try_take(PER_MIN if name == "t" else 1.0)  # t is throttled; the others used once each
        clock.advance(0.01)
    # reading a bucket refills it: that must not count as using it
    assert all((b := table.get(name)) is not None and b.tokens < PER_MIN for name in names)
    assert table.bucket("new") is not None
    assert table.get("t") is not None  # throttled, and the oldest: kept
    assert table.get("z") is None  # the longest idle of the unthrottled: forgotten
    assert all(table.get(name) is not None for name in names[2:])
    clock.advance(60.0)  # every bucket refills: full buckets are the same as new ones, forgotten first
    for n in range(9):
        assert table.bucket(f"b{n}") is not None
    assert len(table) <= 10
