"""The StateBackend contract, run against MemoryBackend and RedisBackend alike."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from streamer.guards.keys import KeyRecord, issue_key
from streamer.state.backend import StateBackend

from .conftest import Elapse

TTL = 60.0


async def test_ping(backend: StateBackend) -> None:
    await backend.ping()


async def test_sessions_admitted_up_to_the_limit(backend: StateBackend) -> None:
    decisions = [await backend.acquire_session("k", f"s{i}", 3, TTL) for i in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    assert 0 < decisions[-1].reset_s <= TTL
    assert await backend.active_sessions("k") == 3
    await backend.release_session("k", "s1")
    assert await backend.active_sessions("k") == 2
    assert (await backend.acquire_session("k", "s9", 3, TTL)).allowed


async def test_reacquiring_a_held_session_takes_no_second_slot(backend: StateBackend) -> None:
    assert (await backend.acquire_session("k", "s", 1, TTL)).allowed
    assert (await backend.acquire_session("k", "s", 1, TTL)).allowed
    assert await backend.active_sessions("k") == 1
    assert not (await backend.acquire_session("k", "other", 1, TTL)).allowed


async def test_unlimited_and_zero_limits(backend: StateBackend) -> None:
    for i in range(20):
        decision = await backend.acquire_session("k", f"s{i}", None, TTL)
        assert decision.allowed
        assert (decision.limit, decision.remaining) == (None, None)
    assert await backend.active_sessions("k") == 20
    assert not (await backend.acquire_session("z", "s", 0, TTL)).allowed


async def test_sessions_are_counted_per_key(backend: StateBackend) -> None:
    assert (await backend.acquire_session("a", "s1", 1, TTL)).allowed
    assert (await backend.acquire_session("b", "s1", 1, TTL)).allowed
    assert not (await backend.acquire_session("a", "s2", 1, TTL)).allowed
    assert await backend.active_sessions("nobody") == 0


async def test_release_is_idempotent(backend: StateBackend) -> None:
    await backend.release_session("k", "never-held")
    assert (await backend.acquire_session("k", "s", 1, TTL)).allowed
    await backend.release_session("k", "s")
    await backend.release_session("k", "s")
    assert await backend.active_sessions("k") == 0


async def test_concurrent_acquires_admit_exactly_the_limit(backend: StateBackend) -> None:
    decisions = await asyncio.gather(*(backend.acquire_session("k", f"s{i}", 5, TTL) for i in range(50)))
    assert sum(d.allowed for d in decisions) == 5
    assert await backend.active_sessions("k") == 5


async def test_slots_expire_unless_refreshed(backend: StateBackend, elapse: Elapse) -> None:
    assert (await backend.acquire_session("k", "crashed", 2, 0.2)).allowed
    assert (await backend.acquire_session("k", "alive", 2, 0.5)).allowed
    assert not (await backend.acquire_session("k", "third", 2, TTL)).allowed
    await elapse(0.3)
    await backend.refresh_session("k", "alive", 0.5)
    assert await backend.active_sessions("k") == 1  # the crashed instance's slot has expired
    await elapse(0.3)  # past "alive"'s first TTL, within its refreshed one
    assert await backend.active_sessions("k") == 1
    assert (await backend.acquire_session("k", "third", 2, TTL)).allowed
    assert not (await backend.acquire_session("k", "fourth", 2, TTL)).allowed


async def test_refresh_does_not_resurrect_an_expired_slot(backend: StateBackend, elapse: Elapse) -> None:
    assert (await backend.acquire_session("k", "s", 1, 0.2)).allowed
    await elapse(0.3)
    await backend.refresh_session("k", "s", TTL)
    assert await backend.active_sessions("k") == 0


async def test_audio_charged_until_the_daily_limit(backend: StateBackend) -> None:
    first = await backend.charge_audio("k", 4.0, daily_limit=10.0)
    assert (first.allowed, first.limit, first.remaining) == (True, 10.0, 6.0)
    assert 0 < first.reset_s <= 86_400
    assert (await backend.charge_audio("k", 6.0, daily_limit=10.0)).allowed  # exactly at the limit
    refused = await backend.charge_audio("k", 0.5, daily_limit=10.0)
    assert (refused.allowed, refused.remaining) == (False, 0.0)
    assert await backend.audio_used("k") == pytest.approx(10.0)  # a refusal charges nothing


async def test_refused_charge_leaves_room_for_a_smaller_one(backend: StateBackend) -> None:
    assert (await backend.charge_audio("k", 8.0, daily_limit=10.0)).allowed
    assert not (await backend.charge_audio("k", 3.0, daily_limit=10.0)).allowed
    assert (await backend.charge_audio("k", 2.0, daily_limit=10.0)).allowed


async def test_fractional_charges_fit_exactly(backend: StateBackend) -> None:
    results = [await backend.charge_audio("k", 0.1, daily_limit=1.0) for _ in range(11)]
    assert [r.allowed for r in results] == [True] * 10 + [False]


async def test_unlimited_audio_is_still_counted(backend: StateBackend) -> None:
    decision = await backend.charge_audio("k", 12.5, daily_limit=None)
    assert (decision.allowed, decision.limit, decision.remaining) == (True, None, None)
    assert await backend.audio_used("k") == pytest.approx(12.5)
    assert await backend.audio_used("unused") == 0.0


async def test_concurrent_charges_never_exceed_the_limit(backend: StateBackend) -> None:
    decisions = await asyncio.gather(*(backend.charge_audio("k", 1.0, daily_limit=10) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10
    assert await backend.audio_used("k") == pytest.approx(10.0)


async def test_bad_arguments_are_refused(backend: StateBackend) -> None:
    with pytest.raises(ValueError):
        await backend.charge_audio("k", -1.0, daily_limit=10.0)
    with pytest.raises(ValueError):
        await backend.acquire_session("k", "s", 1, 0.0)
    with pytest.raises(ValueError):
        await backend.consume_jti("j", -1.0)
    with pytest.raises(ValueError):  # Redis scripts read -1 as "unlimited": never let it through
        await backend.acquire_session("k", "s", -1, TTL)
    with pytest.raises(ValueError):
        await backend.charge_audio("k", 1.0, daily_limit=-1.0)


async def test_jti_is_single_use(backend: StateBackend) -> None:
    assert await backend.consume_jti("jti-1", TTL)
    assert not await backend.consume_jti("jti-1", TTL)
    assert await backend.consume_jti("jti-2", TTL)


async def test_jti_single_use_under_concurrency(backend: StateBackend) -> None:
    results = await asyncio.gather(*(backend.consume_jti("replayed", TTL) for _ in range(50)))
    assert sum(results) == 1


async def test_jti_is_forgotten_after_its_ttl(backend: StateBackend, elapse: Elapse) -> None:
    assert await backend.consume_jti("short", 0.2)
    await elapse(0.3)
    assert await backend.consume_jti("short", 0.2)


def record(key_id: str, created_at: float, **kw: object) -> KeyRecord:
    _, rec = issue_key(f"name {key_id}", "free", now=lambda: created_at)
    return dataclasses.replace(rec, key_id=key_id, **kw)  # type: ignore[arg-type]


async def test_key_records_round_trip(backend: StateBackend) -> None:
    plain = record("aaaaaaaa01", 1_700_000_000.25)
    custom = record(
        "bbbbbbbb02", 1_600_000_000.5, max_sessions=3, audio_seconds_per_day=12.75, tier="unlimited"
    )
    await backend.put_key(plain)
    await backend.put_key(custom)
    assert await backend.get_key("aaaaaaaa01") == plain
    assert await backend.get_key("bbbbbbbb02") == custom
    assert await backend.get_key("nope") is None
    assert await backend.list_keys() == [custom, plain]  # oldest first


async def test_put_key_replaces(backend: StateBackend) -> None:
    await backend.put_key(record("aaaaaaaa01", 1.0, max_sessions=3))
    replacement = record("aaaaaaaa01", 1.0, name="renamed")
    await backend.put_key(replacement)
    assert await backend.get_key("aaaaaaaa01") == replacement
    assert len(await backend.list_keys()) == 1


async def test_revoke_key(backend: StateBackend) -> None:
    rec = record("aaaaaaaa01", 1.0)
    await backend.put_key(rec)
    assert await backend.revoke_key("aaaaaaaa01")
    stored = await backend.get_key("aaaaaaaa01")
    assert stored == dataclasses.replace(rec, revoked=True)
    assert not await backend.revoke_key("nope")
    assert await backend.get_key("nope") is None  # revoking does not create
