"""The long-lived dependencies a running server shares between its sessions and routes: a frozen record.

Nothing here changes while the server runs; mutable state lives with its owner (sessions with
:class:`streamer.session.registry.SessionRegistry`, rates with :mod:`streamer.guards.admission`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from streamer.config import Settings
from streamer.errors import OverloadedError, StreamerError
from streamer.guards.breaker import CircuitBreaker
from streamer.guards.keys import KeyRecord, KeyRing, hash_key, key_id_of
from streamer.guards.tokens import TokenService
from streamer.metrics import Metrics
from streamer.pipeline.asr import AsrEngine, AsrRequest, AsrResult
from streamer.pipeline.batcher import MicroBatcher
from streamer.pipeline.segmenter import SegmenterConfig
from streamer.pipeline.speakers_worker import SpeakerWorker
from streamer.pipeline.vad import VadModel
from streamer.state.backend import BackendUnavailableError, OutageLog, StateBackend

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        hold_ms=s.hold_ms,
        max_utterance_s=s.max_utterance_s,
    )


@dataclass(frozen=True)
class Services:
    """What sessions and routes depend on, built once by the app's cleanup contexts."""

    settings: Settings
    vad: VadModel
    asr: AsrEngine
    asr_batcher: MicroBatcher[AsrRequest, AsrResult]
    tokens: TokenService
    keys: KeyRing
    backend: StateBackend
    metrics: Metrics
    translator: Translator | None = None
    speakers: SpeakerWorker | None = None  # the speaker-embedding worker; None: diarization unavailable
    # by name ("asr", "state", "mt"): the admin API and /readyz show them, admission reads "asr"
    breakers: Mapping[str, CircuitBreaker] = field(default_factory=dict)
    outage: OutageLog = field(default_factory=OutageLog)  # one line per outage, not one per call

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
        if self.outage.succeeded():
            log.warning("state backend reachable again; limits are enforced")
        return result

    def _outage(self, fail_open: T, cause: BackendUnavailableError | None) -> T:
        if self.outage.failed():
            log.warning("state backend unavailable; %s until it answers", self.settings.redis_policy.value)
        if self.settings.redis_policy == "fail_open":
            return fail_open
        raise self._refuse_for_backend(
            OverloadedError("shared state is unavailable; try again shortly", retry_after=2.0)
        ) from cause

    def _refuse_for_backend(self, error: StreamerError) -> StreamerError:
        self.metrics.refusals.labels("state_backend_down").inc()
        error.counted = True
        return error

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
            raise self._refuse_for_backend(
                OverloadedError("API keys cannot be checked right now; try again shortly", retry_after=2.0)
            ) from e
        if stored is None or stored.revoked:
            return None
        return stored if hmac.compare_digest(stored.key_hash, hash_key(presented)) else None

    @property
    def segmenter_config(self) -> SegmenterConfig:
        return segmenter_config(self.settings)
