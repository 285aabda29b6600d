"""Fixtures for the guards: a fake clock, and every StateBackend behind one ``backend`` fixture.

The Redis half needs a server (``STREAMER_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``). Without
one those tests skip locally but FAIL when ``CI`` is set, so a CI without Redis cannot pass silently. Each
test gets its own key prefix and its keys are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis
from fakes import FakeClock

from streamer.state.backend import MemoryBackend, StateBackend
from streamer.state.redis_backend import RedisBackend

# 2023-11-14 22:13:20 UTC: 6,400 s before a UTC midnight, so day arithmetic is checkable by hand.
EPOCH = 1_700_000_000.0

Elapse = Callable[[float], Awaitable[None]]
RedisFactory = Callable[[], RedisBackend]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(EPOCH)


@pytest.fixture
async def redis_backends(redis_url: str) -> AsyncIterator[RedisFactory]:
    """Make RedisBackends sharing one fresh key prefix (several = several server instances)."""
    prefix = f"streamer-test:{uuid.uuid4().hex}:"
    made: list[RedisBackend] = []

    def factory() -> RedisBackend:
        backend = RedisBackend(redis_url, key_prefix=prefix)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        await backend.close()
    cleaner = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in cleaner.scan_iter(match=f"{prefix}*")]
        if keys:
            await cleaner.delete(*keys)
    finally:
        await cleaner.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, clock: FakeClock) -> StateBackend:
    """Each contract test runs against the in-memory backend and against Redis.

    A plain function on purpose: it asks for the async ``redis_backends`` only on the Redis half (so the
    memory half runs without Redis), and an async fixture cannot set up another one from inside its loop.
    """
    if request.param == "memory":
        return MemoryBackend(clock=clock)
    factory: RedisFactory = request.getfixturevalue("redis_backends")
    return factory()


@pytest.fixture
def elapse(backend: StateBackend, clock: FakeClock) -> Elapse:
    """Let ``seconds`` pass for ``backend``: the fake clock moves; Redis (which uses its own TIME) waits.

    Only the Redis half really waits, and only in the few expiry tests, with TTLs of a fraction of a second.
    """

    async def elapse(seconds: float) -> None:
        if isinstance(backend, MemoryBackend):
            clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    return elapse
