"""The long-lived dependencies a running server shares between its sessions and routes: a frozen record of
data (the one derived part, `state`, is the backend under the outage policy: :mod:`streamer.state.guarded`).

Nothing here changes while the server runs; mutable state lives with its owner (sessions with
:class:`streamer.session.registry.SessionRegistry`, rates with :mod:`streamer.guards.admission`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from streamer.config import Settings
from streamer.guards.breaker import CircuitBreaker
from streamer.guards.keys import KeyRing
from streamer.guards.tokens import TokenService
from streamer.metrics import Metrics
from streamer.pipeline.asr import AsrEngine, AsrRequest, AsrResult
from streamer.pipeline.batcher import MicroBatcher
from streamer.pipeline.segmenter import SegmenterConfig
from streamer.pipeline.speakers_worker import SpeakerWorker
from streamer.pipeline.vad import VadModel
from streamer.state.backend import StateBackend
from streamer.state.guarded import SharedState

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
    # the backend under the outage policy (guarded calls, stored API keys): derived from the fields above
    state: SharedState = field(init=False)

    def __post_init__(self) -> None:
        refusals = self.metrics.refusals  # the label's series appears with its first refusal
        state = SharedState(
            self.backend,
            self.keys,
            policy=self.settings.redis_policy,
            breaker=self.breakers.get("state"),
            on_refusal=lambda: refusals.labels("state_backend_down").inc(),
        )
        object.__setattr__(self, "state", state)  # frozen: set once, here

    @property
    def segmenter_config(self) -> SegmenterConfig:
        return segmenter_config(self.settings)
