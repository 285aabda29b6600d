"""Translation cache: the same sentence into the same language is translated once per TTL.

Keys are sha256 digests of (model, source, target, text), so no transcript ever appears in a key or a log.
The in-process cache is a bounded LRU with a TTL and an injected clock; the Redis cache shares translations
between instances. A cache is an optimisation: Redis errors are logged and read as misses, never raised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def cache_key(model: str, source: str, target: str, text: str) -> str:
    """The sha256 hex digest naming one translation. JSON framing keeps the fields unambiguous."""
    payload = json.dumps([model, source, target, text], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class TranslationCache(Protocol):
    """An async cache of translations by :func:`cache_key`."""

    async def get(self, key: str) -> str | None:
        """The cached translation, or ``None`` on a miss (or when the cache is unreachable)."""
        ...

    async def put(self, key: str, value: str) -> None:
        """Store a translation; failures are logged, not raised."""
        ...


class MemoryTranslationCache:
    """A thread-safe LRU of at most ``max_entries`` translations, each kept for ``ttl_s`` seconds."""

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_s: float = 86_400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()  # key -> (expires_at, value)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        """The translation stored under ``key`` if it has not expired; a hit makes it most recently used."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, value = entry
            if self._clock() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: str) -> None:
        """Store ``value``, evicting the least recently used entries beyond ``max_entries``."""
        with self._lock:
            self._entries[key] = (self._clock() + self.ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class AsyncMemoryTranslationCache:
    """:class:`MemoryTranslationCache` behind the async :class:`TranslationCache` interface."""

    def __init__(self, cache: MemoryTranslationCache | None = None) -> None:
        self.cache = cache if cache is not None else MemoryTranslationCache()

    async def get(self, key: str) -> str | None:
        """See :meth:`MemoryTranslationCache.get`."""
        return self.cache.get(key)

    async def put(self, key: str, value: str) -> None:
        """See :meth:`MemoryTranslationCache.put`."""
        self.cache.put(key, value)


class RedisTranslationCache:
    """Translations in Redis under ``prefix + key``, written with ``SET ... EX ttl_s``.

    Pass a client (owned by the caller) or a URL (the cache owns the client it makes, with
    ``socket_timeout`` so a stalled Redis costs a miss rather than a stalled translation).
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        ttl_s: int = 86_400,
        prefix: str = "streamer:mt:",
        socket_timeout: float = 0.5,
    ) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least one second")
        self._owned = isinstance(redis, str)
        if isinstance(redis, str):
            redis = aioredis.Redis.from_url(
                redis, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
        self._redis = redis
        self.ttl_s = ttl_s
        self.prefix = prefix

    async def get(self, key: str) -> str | None:
        """The cached translation, or ``None`` on a miss or a Redis error (logged at WARNING)."""
        try:
            value = await self._redis.get(self.prefix + key)
        except (RedisError, OSError) as e:
            log.warning("translation cache read failed, treating it as a miss: %s: %s", type(e).__name__, e)
            return None
        if value is None:
            return None
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    async def put(self, key: str, value: str) -> None:
        """Store a translation for ``ttl_s``; a Redis error is logged at WARNING and dropped."""
        try:
            await self._redis.set(self.prefix + key, value.encode("utf-8"), ex=self.ttl_s)
        except (RedisError, OSError) as e:
            log.warning("translation cache write failed, dropping it: %s: %s", type(e).__name__, e)

    async def aclose(self) -> None:
        """Close the client if this cache made it from a URL; a caller's client is left open."""
        if self._owned:
            await self._redis.aclose()
