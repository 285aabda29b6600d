"""The shared state as the server uses it: every backend call under the outage policy, and the API keys
it stores.

``fail_open``: while the backend is unreachable, limits are not enforced (the call's ``fail_open`` value
is the answer) and service continues; ``fail_closed``: the request is refused as retryable (503). A
``state`` circuit breaker, when there is one, skips a backend known to be down instead of waiting on a
timeout per request. An outage is logged once when it begins and once when it ends.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streamer.config import RedisPolicy
from streamer.errors import OverloadedError, StreamerError
from streamer.guards.breaker import CircuitBreaker
from streamer.guards.keys import KeyRecord, KeyRing, hash_key, key_id_of
from streamer.state.backend import BackendUnavailableError, OutageLog, StateBackend

__all__ = ["SharedState"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class SharedState:
    def __init__(
        self,
        backend: StateBackend,
        keys: KeyRing,
        *,
        policy: RedisPolicy,
        breaker: CircuitBreaker | None = None,
        on_refusal: Callable[[], None] = lambda: None,
    ) -> None:
        self.backend = backend
        self._keys = keys
        self._policy = policy
        self._breaker = breaker
        self._on_refusal = on_refusal  # counts a request refused because the backend is down
        self._outage = OutageLog()

    async def call(self, call: Callable[[], Awaitable[T]], fail_open: T) -> T:
        """``call()``'s answer, or ``fail_open`` (or a 503) while the backend cannot answer."""
        breaker = self._breaker
        if breaker is not None and not breaker.allow():
            return self._outage_answer(fail_open, None)
        try:
            result = await call()
        except BackendUnavailableError as e:
            if breaker is not None:
                breaker.record_failure()
            return self._outage_answer(fail_open, e)
        if breaker is not None:
            breaker.record_success()
        if self._outage.succeeded():
            log.warning("state backend reachable again; limits are enforced")
        return result

    async def authenticate(self, presented: str) -> KeyRecord | None:
        """The key record for a presented API key: static keys first, then keys made by the admin API."""
        record = self._keys.verify_static(presented)
        if record is not None:
            return record
        key_id = key_id_of(presented)
        if key_id is None:
            return None
        try:
            stored = await self.backend.get_key(key_id)
        except BackendUnavailableError as e:
            # no policy makes an unverifiable key valid, and a 401 would tell its owner it is bad
            raise self._refused(
                OverloadedError("API keys cannot be checked right now; try again shortly", retry_after=2.0)
            ) from e
        if stored is None or stored.revoked:
            return None
        return stored if hmac.compare_digest(stored.key_hash, hash_key(presented)) else None

    def _outage_answer(self, fail_open: T, cause: BackendUnavailableError | None) -> T:
        if self._outage.failed():
            log.warning("state backend unavailable; %s until it answers", self._policy.value)
        if self._policy is RedisPolicy.FAIL_OPEN:
            return fail_open
        raise self._refused(
            OverloadedError("shared state is unavailable; try again shortly", retry_after=2.0)
        ) from cause

    def _refused(self, error: StreamerError) -> StreamerError:
        self._on_refusal()
        error.counted = True
        return error
