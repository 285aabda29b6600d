"""Where the model's time went, from two /metrics texts of the server's own registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from streamer.metrics import Metrics
from streamer_bench import server_metrics as sm


def _text(m: Metrics) -> str:
    return generate_latest(m.registry).decode()


def test_profile_differences_the_counters_of_one_run() -> None:
    m = Metrics()
    m.model_work.labels("final").inc(5.0)  # before the run: not counted
    m.loop_lag.observe(0.9)
    before = sm.parse(_text(m))
    m.model_work.labels("final").inc(1.5)
    m.model_work.labels("speculative_wasted").inc(0.5)
    m.model_work.labels("partial").inc(2.0)
    m.model_window.labels("padding").inc(3.0)
    m.model_window.labels("audio").inc(1.0)
    m.decode_attempts.labels("greedy").inc(4)
    m.decode_attempts.labels("beam5").inc()
    m.final_outcomes.labels("fallback_rescued").inc()
    for _ in range(99):
        m.loop_lag.observe(0.002)
    m.loop_lag.observe(0.3)
    work = sm.profile(sm.diff(before, sm.parse(_text(m))), wall_s=10.0)
    assert work["work_s"] == {
        "final": 1.5,
        "speculative_used": 0.0,
        "speculative_wasted": 0.5,
        "partial": 2.0,
        "fallback": 0.0,
    }
    assert work["work_total_s"] == 4.0
    assert work["model_busy_share"] == 0.4
    assert work["padding_share"] == 0.75
    assert work["decode_attempts"] == {"beam5": 1, "greedy": 4}
    assert work["final_outcomes"] == {"fallback_rescued": 1}
    # 99 of 100 observations at 2 ms: p99 inside the (1 ms, 5 ms] bucket, not the 0.9 s before the run
    assert 0.001 < work["loop_lag_p99_s"] <= 0.005


def test_what_the_server_does_not_export_is_unknown_not_zero() -> None:
    registry = CollectorRegistry()
    window = Counter("streamer_model_window_seconds", "padding only", ["part"], registry=registry)
    window.labels("padding").inc(2)
    text = generate_latest(registry).decode()
    work = sm.profile(sm.diff({}, sm.parse(text)), wall_s=5.0)
    assert work["padding_s"] == 2.0
    assert work["padding_share"] is None  # no unpadded input exported: the share cannot be known
    assert work["loop_lag_p99_s"] is None
    assert work["model_busy_share"] is None


def test_a_lag_histogram_that_observed_nothing_has_no_p99() -> None:
    m = Metrics()
    text = _text(m)
    assert sm.profile(sm.diff(sm.parse(text), sm.parse(text)), wall_s=1.0)["loop_lag_p99_s"] is None


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ({"0.1": 50.0, "0.2": 100.0, "+Inf": 100.0}, 0.198),  # interpolated in (0.1, 0.2]
        ({"0.1": 0.0, "1.0": 0.0, "+Inf": 10.0}, 1.0),  # past the last bound: the last bound
        ({"0.1": 0.0, "+Inf": 0.0}, None),
        ({"0.1": 3.0}, None),  # no +Inf bucket: not a histogram
    ],
)
def test_histogram_quantile(buckets: dict[str, float], expected: float | None) -> None:
    got = sm.histogram_quantile(0.99, buckets)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_a_quiet_server_has_no_live_session_and_nothing_queued() -> None:
    m = Metrics()
    assert sm.is_quiet(sm.parse(_text(m)))
    m.queue_depth.labels("asr", "final").set(2)
    assert not sm.is_quiet(sm.parse(_text(m)))
    m.queue_depth.labels("asr", "final").set(0)
    m.active_sessions.set(1)
    assert not sm.is_quiet(sm.parse(_text(m)))


def test_a_p99_past_the_last_bucket_says_so() -> None:
    m = Metrics()
    for _ in range(10):
        m.loop_lag.observe(2.5)  # past the 1 s bucket
    work = sm.profile(sm.parse(_text(m)), wall_s=1.0)
    assert work["loop_lag_p99_s"] == 1.0 and work["loop_lag_p99_beyond_top"]
    m2 = Metrics()
    m2.loop_lag.observe(0.02)
    assert not sm.profile(sm.parse(_text(m2)), wall_s=1.0)["loop_lag_p99_beyond_top"]
