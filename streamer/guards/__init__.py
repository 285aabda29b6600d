"""Rate limits, quotas, circuit breaking and API keys: pure logic with an injected clock, no aiohttp.

The Redis backend lives in ``streamer.guards.redis_backend`` and is not imported here, so using the guards
does not import ``redis``; :func:`create_backend` loads it when given a URL.
"""

from streamer.guards.backend import (
    BackendUnavailableError,
    MemoryBackend,
    QuotaDecision,
    StateBackend,
)
from streamer.guards.breaker import (
    BreakerError,
    BreakerOpenError,
    BreakerState,
    BreakerTimeoutError,
    CircuitBreaker,
)
from streamer.guards.clock import Clock, FakeClock, monotonic
from streamer.guards.keys import TIERS, KeyRecord, KeyRing, Tier, generate_key, hash_key, issue_key, key_id_of
from streamer.guards.ratelimit import AudioPacer, TokenBucket
from streamer.guards.retry import backoff_delays, retry_async
from streamer.guards.state import create_backend

__all__ = [
    "TIERS",
    "AudioPacer",
    "BackendUnavailableError",
    "BreakerError",
    "BreakerOpenError",
    "BreakerState",
    "BreakerTimeoutError",
    "CircuitBreaker",
    "Clock",
    "FakeClock",
    "KeyRecord",
    "KeyRing",
    "MemoryBackend",
    "QuotaDecision",
    "StateBackend",
    "Tier",
    "TokenBucket",
    "backoff_delays",
    "create_backend",
    "generate_key",
    "hash_key",
    "issue_key",
    "key_id_of",
    "monotonic",
    "retry_async",
]
