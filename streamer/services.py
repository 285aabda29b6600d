"""The long-lived objects a running server shares between its sessions and routes."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from streamer.config import Settings
from streamer.errors import ModelUnavailableError, OverloadedError, RateLimitedError
from streamer.guards.backend import BackendUnavailableError
from streamer.guards.breaker import BreakerState, CircuitBreaker
from streamer.guards.keys import KeyRecord, KeyRing, hash_key, key_id_of
from streamer.guards.ratelimit import TokenBucket
from streamer.metrics import Metrics
from streamer.pipeline.asr import AsrEngine, AsrRequest, AsrResult
from streamer.pipeline.batcher import MicroBatcher
from streamer.pipeline.segmenter import SegmenterConfig
from streamer.pipeline.vad import VadModel
from streamer.session.tokens import TokenService

if TYPE_CHECKING:
    from streamer.guards.backend import StateBackend
    from streamer.session.resume import Parked
    from streamer.session.runtime import StreamSession
    from streamer.session.ws import Connection

log = logging.getLogger(__name__)
T = TypeVar("T")

# Per-key session-rate buckets kept before full (idle) ones are forgotten; a full bucket equals a new one.
MAX_RATE_BUCKETS = 10_000


class Translator(Protocol):
    """What a session needs from translation: all targets for one final, in the order asked."""

    def supports(self, source: str | None, target: str) -> bool: ...

    def describe(self) -> dict[str, object]: ...

    async def translate(
        self, session_id: str, text: str, source: str, targets: Sequence[str]
    ) -> list[tuple[str, str]]: ...


def segmenter_config(s: Settings) -> SegmenterConfig:
    return SegmenterConfig(
        start_threshold=s.vad_start_threshold,
        end_threshold=s.vad_end_threshold,
        min_speech_ms=s.min_speech_ms,
        pre_roll_ms=s.pre_roll_ms,
        end_silence_ms=s.end_silence_ms,
        pause_ms=s.pause_ms,
        max_utterance_s=s.max_utterance_s,
    )


@dataclass
class Services:
    settings: Settings
    vad: VadModel
    asr: AsrEngine
    asr_batcher: MicroBatcher[AsrRequest, AsrResult]
    tokens: TokenService
    keys: KeyRing
    backend: StateBackend
    metrics: Metrics
    translator: Translator | None = None
    sessions: dict[str, StreamSession] = field(default_factory=dict)
    connections: dict[str, Connection] = field(default_factory=dict)
    parked: dict[str, Parked] = field(default_factory=dict)
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    draining: bool = False
    demo_bucket: TokenBucket = field(default_factory=lambda: TokenBucket(rate_per_s=1.0, burst=10.0))
    session_rates: dict[str, TokenBucket] = field(default_factory=dict)

    async def backend_call(self, call: Callable[[], Awaitable[T]], fail_open: T) -> T:
        """Run a state-backend call under the configured outage policy.

        ``fail_open``: while the backend is unreachable, limits are not enforced (``fail_open`` is the
        answer) and service continues; ``fail_closed``: the request is refused as retryable (503).
        """
        breaker = self.breakers.get("state")
        if breaker is not None and not breaker.allow():
            # known to be down: apply the policy now instead of waiting on a timeout per request
            return self._outage(fail_open, None)
        try:
            result = await call()
        except BackendUnavailableError as e:
            if breaker is not None:
                breaker.record_failure()
            return self._outage(fail_open, e)
        if breaker is not None:
            breaker.record_success()
        return result

    def _outage(self, fail_open: T, cause: BackendUnavailableError | None) -> T:
        self.metrics.refusals.labels("state_backend_down").inc()
        if self.settings.redis_policy == "fail_open":
            log.warning("state backend unavailable; failing open")
            return fail_open
        raise OverloadedError("shared state is unavailable; try again shortly", retry_after=2.0) from cause

    async def authenticate(self, presented: str) -> KeyRecord | None:
        """The key record for a presented API key: static keys first, then keys made by the admin API."""
        record = self.keys.verify_static(presented)
        if record is not None:
            return record
        key_id = key_id_of(presented)
        if key_id is None:
            return None
        try:
            stored = await self.backend.get_key(key_id)
        except BackendUnavailableError as e:
            # no policy makes an unverifiable key valid, and a 401 would tell its owner it is bad
            self.metrics.refusals.labels("state_backend_down").inc()
            raise OverloadedError(
                "API keys cannot be checked right now; try again shortly", retry_after=2.0
            ) from e
        if stored is None or stored.revoked:
            return None
        return stored if hmac.compare_digest(stored.key_hash, hash_key(presented)) else None

    def check_session_rate(self, key_id: str) -> None:
        """New sessions per key and minute (``session_rate_per_key_per_min``; 0 = off), per process.

        The bucket holds one minute's allowance, so a client may start that many sessions at once.
        """
        per_min = self.settings.session_rate_per_key_per_min
        if per_min <= 0:
            return
        bucket = self.session_rates.get(key_id)
        if bucket is None:
            if len(self.session_rates) >= MAX_RATE_BUCKETS:
                for idle in [k for k, b in self.session_rates.items() if b.tokens >= b.burst]:
                    del self.session_rates[idle]
            bucket = self.session_rates[key_id] = TokenBucket(per_min / 60.0, max(1.0, per_min))
        if not bucket.try_take():
            self.metrics.refusals.labels("session_rate").inc()
            raise RateLimitedError(
                f"this key may start at most {per_min:g} sessions per minute",
                code="session_rate_exceeded",
                retry_after=bucket.retry_after(),
            )

    @property
    def segmenter_config(self) -> SegmenterConfig:
        return segmenter_config(self.settings)

    def check_capacity(self) -> None:
        """Admission control: refuse new work rather than make every session slower."""
        s = self.settings
        if self.draining:
            raise OverloadedError("the server is shutting down", retry_after=5.0)
        if len(self.sessions) >= s.max_sessions:
            self.metrics.refusals.labels("max_sessions").inc()
            raise OverloadedError("the server is at its session limit", retry_after=5.0)
        batcher = self.asr_batcher
        breaker = self.breakers.get("asr")
        # OPEN only: a HALF_OPEN breaker needs a session's audio to probe the model with
        if batcher.hung or (breaker is not None and breaker.state is BreakerState.OPEN):
            self.metrics.refusals.labels("model_unavailable").inc()
            wait = 5.0 if batcher.hung or breaker is None else breaker.retry_after()
            raise ModelUnavailableError("the transcription model is unavailable", retry_after=max(1.0, wait))
        recent = time.monotonic() - batcher.last_batch_at < 5.0
        if recent and batcher.latency_ewma_s > s.saturation_latency_s:
            self.metrics.refusals.labels("saturated").inc()
            raise OverloadedError("the server is saturated", retry_after=5.0)
        if batcher.finals_pending > batcher.max_pending_finals // 2:
            self.metrics.refusals.labels("queue_full").inc()
            raise OverloadedError("the transcription queue is full", retry_after=5.0)
