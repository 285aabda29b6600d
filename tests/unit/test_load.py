"""Predictive admission: the expected model load from measured cost and each session's speech share."""

from __future__ import annotations

import pytest

from streamer.errors import OverloadedError
from streamer.guards.admission import Admission, AdmissionLimits, Refusal
from streamer.guards.load import PRIOR_SPEECH_SHARE, LoadMeter, expected_load, speech_share
from streamer.pipeline.batcher import BatcherSnapshot

IDLE = BatcherSnapshot(
    hung=False, finals_pending=0, max_pending_finals=64, latency_ewma_s=0.0, last_batch_at=0.0
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cost_is_unknown_until_enough_speech_was_measured() -> None:
    clock = Clock()
    meter = LoadMeter(clock, window_s=60.0, min_speech_s=10.0)
    meter.record(model_s=0.5, speech_s=5.0)
    assert meter.cost_per_speech_s() is None
    meter.record(model_s=1.5, speech_s=5.0)
    assert meter.cost_per_speech_s() == pytest.approx(0.2)


def test_cost_forgets_what_left_the_window() -> None:
    clock = Clock()
    meter = LoadMeter(clock, window_s=60.0, min_speech_s=1.0)
    meter.record(model_s=10.0, speech_s=10.0)  # a slow minute long ago
    clock.now += 61
    meter.record(model_s=1.0, speech_s=10.0)
    assert meter.cost_per_speech_s() == pytest.approx(0.1)


def test_speech_share_uses_a_prior_until_measured() -> None:
    assert speech_share(0.0, 3.0) == PRIOR_SPEECH_SHARE
    assert speech_share(12.0, 30.0) == pytest.approx(0.4)
    assert speech_share(0.0, 600.0) > 0  # an idle session may still start talking


def test_a_burst_is_refused_before_latency_breaks() -> None:
    admission = Admission(
        AdmissionLimits(max_sessions=100, saturation_latency_s=1.5, session_rate_per_key_per_min=0)
    )
    cost = 0.08  # model seconds per second of speech
    held = [PRIOR_SPEECH_SHARE] * 16
    fits = expected_load([*held, PRIOR_SPEECH_SHARE], cost)
    assert fits is not None and fits < 0.85
    admission.check_capacity(
        draining=False, live_sessions=16, batcher=IDLE, breaker_state=None, load_with_new=fits
    )
    crowded = expected_load([PRIOR_SPEECH_SHARE] * 18, cost)
    with pytest.raises(Refusal) as refused:
        admission.check_capacity(
            draining=False, live_sessions=17, batcher=IDLE, breaker_state=None, load_with_new=crowded
        )
    assert refused.value.reason == "predicted_overload"
    assert isinstance(refused.value.error, OverloadedError)


def test_an_idle_server_never_refuses_for_load_or_stale_latency() -> None:
    clock = Clock()
    admission = Admission(
        AdmissionLimits(max_sessions=100, saturation_latency_s=1.5, session_rate_per_key_per_min=0), clock
    )
    slow = BatcherSnapshot(
        hung=False, finals_pending=0, max_pending_finals=64, latency_ewma_s=9.0, last_batch_at=clock.now
    )
    admission.check_capacity(
        draining=False, live_sessions=0, batcher=slow, breaker_state=None, load_with_new=5.0
    )
