"""Connecting the state backend: in-process without a URL, Redis (checked with a few pings) with one.

Apart from :mod:`streamer.state.backend`, so the Redis backend (which builds on that module) is only
imported here, and only when a URL is given.
"""

from __future__ import annotations

import logging

from streamer.guards.retry import retry_async
from streamer.state.backend import BackendUnavailableError, MemoryBackend, StateBackend

log = logging.getLogger(__name__)


async def create_backend(
    redis_url: str | None, *, connect_attempts: int = 3, require: bool = False
) -> StateBackend:
    """A :class:`MemoryBackend` without a URL, else a ``RedisBackend`` checked with a few pings.

    If Redis does not answer, the backend is still returned (it reconnects by itself and readiness reports
    it) unless ``require`` is set, in which case :class:`BackendUnavailableError` propagates.
    """
    if not redis_url:
        log.info("state backend: in-memory (limits are per process)")
        return MemoryBackend()
    from streamer.state.redis_backend import RedisBackend  # redis is only needed with a URL

    backend = RedisBackend(redis_url)
    try:
        await retry_async(backend.ping, connect_attempts, 0.2, 2.0, retry_on=(BackendUnavailableError,))
    except BackendUnavailableError:
        if require:
            await backend.close()
            raise
        log.warning("state backend: Redis at %s is not answering yet; continuing", backend.safe_url)
    else:
        log.info("state backend: Redis at %s", backend.safe_url)
    return backend
