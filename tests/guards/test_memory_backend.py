"""What only the in-memory backend can show: UTC days with a fake clock, and that it forgets."""

from __future__ import annotations

import pytest
from fakes import FakeClock

from streamer.state.backend import MemoryBackend
from streamer.state.connect import create_backend


async def test_audio_quota_resets_at_utc_midnight(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    decision = await backend.charge_audio("k", 10.0, daily_limit=10.0)
    assert decision.reset_s == pytest.approx(6_400.0)  # the fixture's clock is 6,400 s before midnight
    assert not (await backend.charge_audio("k", 1.0, daily_limit=10.0)).allowed
    clock.advance(6_399.0)
    assert not (await backend.charge_audio("k", 1.0, daily_limit=10.0)).allowed
    clock.advance(1.0)
    assert await backend.audio_used("k") == 0.0
    decision = await backend.charge_audio("k", 1.0, daily_limit=10.0)
    assert decision.allowed
    assert decision.reset_s == pytest.approx(86_400.0)


async def test_expired_state_is_forgotten(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    for i in range(100):
        assert await backend.consume_jti(f"j{i}", 1.0)
        await backend.acquire_session("k", f"s{i}", None, 1.0)
    clock.advance(2.0)
    assert await backend.consume_jti("fresh", 1.0)
    assert await backend.active_sessions("k") == 0
    # Bounded memory: expired token ids and slots are dropped, not kept forever.
    assert len(backend._jtis) == 1
    assert backend._sessions["k"] == {}


async def test_a_reused_jti_expires_on_its_latest_ttl(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    assert await backend.consume_jti("j", 1.0)
    clock.advance(1.0)
    assert await backend.consume_jti("j", 10.0)
    clock.advance(5.0)
    assert not await backend.consume_jti("j", 10.0)


async def test_create_backend_without_url_is_in_memory() -> None:
    backend = await create_backend(None)
    assert isinstance(backend, MemoryBackend)
    await backend.ping()
    await backend.close()
