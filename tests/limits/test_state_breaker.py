"""The breaker around the state backend: after repeated failures, stop waiting on Redis timeouts."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import FakeClock

from streamer.config import Settings
from streamer.errors import OverloadedError
from streamer.guards.breaker import BreakerState, CircuitBreaker
from streamer.metrics import Metrics
from streamer.services import Services
from streamer.state.backend import BackendUnavailableError


class FlakyCall:
    def __init__(self) -> None:
        self.calls = 0
        self.down = True

    async def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise BackendUnavailableError("connection refused")
        return "answer"


def services(policy: str, clock: FakeClock) -> Services:
    none: Any = None
    s = Services(
        settings=Settings(redis_policy=policy),
        vad=none,
        asr=none,
        asr_batcher=none,
        tokens=none,
        keys=none,
        backend=none,
        metrics=Metrics(),
        breakers={"state": CircuitBreaker("state", failure_threshold=3, reset_timeout_s=2.0, clock=clock)},
    )
    return s


async def test_open_breaker_skips_the_backend_and_applies_fail_open() -> None:
    clock = FakeClock()
    svc, call = services("fail_open", clock), FlakyCall()
    for _ in range(3):
        assert await svc.state.call(call, "fallback") == "fallback"
    assert svc.breakers["state"].state is BreakerState.OPEN
    assert await svc.state.call(call, "fallback") == "fallback"
    assert call.calls == 3  # the fourth request did not wait on the dead backend

    call.down = False
    clock.advance(2.1)  # half-open: one probe goes through and closes the breaker
    assert await svc.state.call(call, "fallback") == "answer"
    assert svc.breakers["state"].state is BreakerState.CLOSED


async def test_open_breaker_with_fail_closed_refuses_fast() -> None:
    clock = FakeClock()
    svc, call = services("fail_closed", clock), FlakyCall()
    for _ in range(3):
        with pytest.raises(OverloadedError):
            await svc.state.call(call, None)
    with pytest.raises(OverloadedError) as e:
        await svc.state.call(call, None)
    assert call.calls == 3
    assert e.value.retryable and e.value.status == 503
