"""Translation caches: keys, the in-process LRU/TTL cache, and Redis (round trip, and errors as misses)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from streamer.pipeline.mt_cache import (
    AsyncMemoryTranslationCache,
    MemoryTranslationCache,
    RedisTranslationCache,
    TranslationCache,
    cache_key,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_cache_key_is_a_digest_of_every_field() -> None:
    key = cache_key("nllb", "en", "es", "hello")
    assert len(key) == 64
    assert key == cache_key("nllb", "en", "es", "hello")
    assert "hello" not in key
    others = {
        cache_key("m2m", "en", "es", "hello"),
        cache_key("nllb", "de", "es", "hello"),
        cache_key("nllb", "en", "fr", "hello"),
        cache_key("nllb", "en", "es", "hello!"),
    }
    assert key not in others
    assert len(others) == 4
    # Field boundaries cannot be shifted to forge a collision.
    assert cache_key("a", "b", "c", "d e") != cache_key("a", "b", "c d", "e")


def test_memory_hit_and_miss() -> None:
    cache = MemoryTranslationCache()
    assert cache.get("k") is None
    cache.put("k", "hola")
    assert cache.get("k") == "hola"
    cache.put("k", "buenas")
    assert cache.get("k") == "buenas"
    assert len(cache) == 1


def test_memory_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    cache = MemoryTranslationCache(ttl_s=10, clock=clock)
    cache.put("k", "hola")
    clock.now += 9.9
    assert cache.get("k") == "hola"
    clock.now += 0.1
    assert cache.get("k") is None
    assert len(cache) == 0, "an expired entry is dropped when found"


def test_memory_put_renews_ttl() -> None:
    clock = FakeClock()
    cache = MemoryTranslationCache(ttl_s=10, clock=clock)
    cache.put("k", "hola")
    clock.now += 8
    cache.put("k", "hola")
    clock.now += 8
    assert cache.get("k") == "hola"


def test_memory_evicts_least_recently_used() -> None:
    cache = MemoryTranslationCache(max_entries=2)
    cache.put("a", "1")
    cache.put("b", "2")
    assert cache.get("a") == "1"  # "b" is now the least recently used
    cache.put("c", "3")
    assert cache.get("b") is None
    assert cache.get("a") == "1"
    assert cache.get("c") == "3"
    assert len(cache) == 2


def test_memory_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryTranslationCache(max_entries=0)


async def test_async_memory_cache_shares_the_protocol() -> None:
    clock = FakeClock()
    cache: TranslationCache = AsyncMemoryTranslationCache(MemoryTranslationCache(ttl_s=5, clock=clock))
    key = cache_key("m", "en", "es", "hello")
    assert await cache.get(key) is None
    await cache.put(key, "hola")
    assert await cache.get(key) == "hola"
    clock.now += 5
    assert await cache.get(key) is None


@pytest.fixture
async def redis_cache(redis_client: aioredis.Redis) -> AsyncIterator[RedisTranslationCache]:
    prefix = f"test:mt:{uuid.uuid4().hex}:"
    yield RedisTranslationCache(redis_client, ttl_s=60, prefix=prefix)
    keys = [key async for key in redis_client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_client.delete(*keys)


@pytest.mark.redis
async def test_redis_round_trip(redis_cache: RedisTranslationCache, redis_client: aioredis.Redis) -> None:
    cache: TranslationCache = redis_cache
    key = cache_key("nllb", "en", "ja", "good morning")
    assert await cache.get(key) is None
    await cache.put(key, "おはようございます")
    assert await cache.get(key) == "おはようございます"
    ttl = await redis_client.ttl(redis_cache.prefix + key)
    assert 0 < ttl <= 60


@pytest.mark.redis
async def test_redis_cache_from_url_owns_its_client(redis_url: str, redis_client: aioredis.Redis) -> None:
    prefix = f"test:mt:{uuid.uuid4().hex}:"
    cache = RedisTranslationCache(redis_url, ttl_s=5, prefix=prefix)
    try:
        await cache.put("k", "v")
        assert await cache.get("k") == "v"
    finally:
        await cache.aclose()
        await redis_client.delete(prefix + "k")
    assert await redis_client.ping()  # the fixture's client is untouched


class BrokenRedis:
    """A client whose every command fails the way a dropped connection does."""

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("Connection reset by peer")

    async def set(self, *args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("Connection reset by peer")


async def test_redis_errors_are_misses(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisTranslationCache(BrokenRedis(), ttl_s=60)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="streamer.pipeline.mt_cache"):
        await cache.put("k", "secret translation")
        assert await cache.get("k") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert not any("secret translation" in r.getMessage() for r in warnings)


async def test_unreachable_redis_is_a_miss(caplog: pytest.LogCaptureFixture) -> None:
    # Port 1 on loopback refuses connections at once.
    cache = RedisTranslationCache("redis://127.0.0.1:1/0", ttl_s=60, socket_timeout=0.5)
    try:
        with caplog.at_level(logging.WARNING, logger="streamer.pipeline.mt_cache"):
            await cache.put("k", "v")
            assert await cache.get("k") is None
    finally:
        await cache.aclose()
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 2


def test_redis_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        RedisTranslationCache("redis://127.0.0.1:6379/0", ttl_s=0)
