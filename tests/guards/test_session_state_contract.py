"""The StateBackend contract for sessions' durable state (resume on any instance), run against
MemoryBackend and RedisBackend alike: owner-only writes, claims that wait for a live owner and take over
from a dead one, a bounded message history, expiry."""

from __future__ import annotations

import asyncio

import pytest

from streamer.state.backend import StateBackend

from .conftest import Elapse

TTL = 60.0


async def test_first_save_creates_and_owner_saves_append_bounded(backend: StateBackend) -> None:
    assert await backend.load_session_state("s") is None
    assert await backend.save_session_state("s", "a", "st1", ["m1"], keep=3, ttl_s=TTL)
    assert await backend.save_session_state("s", "a", "st2", ["m2", "m3"], keep=3, ttl_s=TTL)
    assert await backend.save_session_state("s", "a", "st3", ["m4"], keep=3, ttl_s=TTL)
    assert await backend.save_session_state("s", "a", "st4", [], keep=3, ttl_s=TTL)  # state only
    record = await backend.load_session_state("s")
    assert record is not None
    assert (record.state, record.messages, record.owner) == ("st4", ["m2", "m3", "m4"], "a")


async def test_another_instance_cannot_write_a_held_session(backend: StateBackend) -> None:
    assert await backend.save_session_state("s", "a", "mine", ["m1"], keep=8, ttl_s=TTL)
    assert not await backend.save_session_state("s", "b", "theirs", ["x"], keep=8, ttl_s=TTL)
    record = await backend.load_session_state("s")
    assert record is not None and (record.state, record.messages) == ("mine", ["m1"])


async def test_claim_waits_for_a_live_owner_and_takes_a_parked_session(backend: StateBackend) -> None:
    await backend.beat("a", TTL)
    await backend.beat("b", TTL)
    assert (await backend.claim_session_state("nobody", "b", TTL)).outcome == "missing"
    assert await backend.save_session_state("s", "a", "st", ["m1"], keep=8, ttl_s=TTL)
    assert (await backend.claim_session_state("s", "b", TTL)).outcome == "busy"
    assert (await backend.claim_session_state("s", "a", TTL)).outcome == "claimed"  # its own: fine
    # the owner parks it: now anyone may take it, with everything it wrote
    assert await backend.save_session_state("s", "a", "parked", [], keep=8, ttl_s=TTL, release=True)
    claim = await backend.claim_session_state("s", "b", TTL)
    assert claim.outcome == "claimed" and claim.record is not None
    assert (claim.record.state, claim.record.messages, claim.record.owner) == ("parked", ["m1"], "b")
    # the old owner lost it: its late writes are refused (no split brain)
    assert not await backend.save_session_state("s", "a", "late", ["late"], keep=8, ttl_s=TTL)
    assert (await backend.claim_session_state("s", "a", TTL)).outcome == "busy"


async def test_a_dead_owner_loses_its_sessions(backend: StateBackend, elapse: Elapse) -> None:
    await backend.beat("a", 0.2)
    assert await backend.save_session_state("s", "a", "st", ["m1"], keep=8, ttl_s=TTL)
    assert (await backend.claim_session_state("s", "b", TTL)).outcome == "busy"
    await elapse(0.3)  # "a" stopped beating: it crashed
    claim = await backend.claim_session_state("s", "b", TTL)
    assert claim.outcome == "claimed" and claim.record is not None and claim.record.state == "st"


async def test_never_beating_owner_counts_as_dead(backend: StateBackend) -> None:
    assert await backend.save_session_state("s", "ghost", "st", [], keep=8, ttl_s=TTL)
    assert (await backend.claim_session_state("s", "b", TTL)).outcome == "claimed"


async def test_one_claim_wins_among_concurrent_claimers(backend: StateBackend) -> None:
    assert await backend.save_session_state("s", "a", "st", [], keep=8, ttl_s=TTL, release=True)
    for name in "bcdef":
        await backend.beat(name, TTL)
    claims = await asyncio.gather(*(backend.claim_session_state("s", name, TTL) for name in "bcdef"))
    assert sorted(c.outcome for c in claims) == ["busy"] * 4 + ["claimed"]


async def test_state_expires_with_its_ttl(backend: StateBackend, elapse: Elapse) -> None:
    assert await backend.save_session_state("s", "a", "st", ["m"], keep=8, ttl_s=0.2, release=True)
    await elapse(0.3)
    assert await backend.load_session_state("s") is None
    assert (await backend.claim_session_state("s", "b", TTL)).outcome == "missing"


async def test_drop_forgets_unless_someone_else_holds_it(backend: StateBackend) -> None:
    await backend.beat("b", TTL)
    assert await backend.save_session_state("s", "a", "st", ["m"], keep=8, ttl_s=TTL, release=True)
    assert (await backend.claim_session_state("s", "b", TTL)).outcome == "claimed"
    await backend.drop_session_state("s", "a")  # "a" no longer holds it: nothing happens
    assert await backend.load_session_state("s") is not None
    await backend.drop_session_state("s", "b")
    assert await backend.load_session_state("s") is None
    await backend.drop_session_state("s", "b")  # idempotent
    # a fresh save after a drop starts an empty history
    assert await backend.save_session_state("s", "c", "new", [], keep=8, ttl_s=TTL)
    record = await backend.load_session_state("s")
    assert record is not None and record.messages == []


async def test_bad_session_state_arguments_are_refused(backend: StateBackend) -> None:
    with pytest.raises(ValueError):
        await backend.save_session_state("s", "a", "st", [], keep=0, ttl_s=TTL)
    with pytest.raises(ValueError):
        await backend.save_session_state("s", "a", "st", [], keep=8, ttl_s=0.0)
    with pytest.raises(ValueError):
        await backend.claim_session_state("s", "a", -1.0)
    with pytest.raises(ValueError):
        await backend.beat("a", float("inf"))
