"""Doubles for session-level tests: a scripted VAD, a recording outbox sink, and a Services record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from fakes import FakeAsr
from support import JWT_SECRET, make_settings

from streamer.config import Settings
from streamer.guards.keys import KeyRing
from streamer.guards.tokens import TokenService
from streamer.metrics import Metrics
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.pipeline.batcher import MicroBatcher
from streamer.pipeline.vad import WINDOW
from streamer.services import Services
from streamer.state.backend import MemoryBackend


@dataclass
class ScriptedVad:
    """Every call that brings audio completes exactly one window, scored by the next ``script`` entry
    (then 0.0): the test decides which call ends an utterance, whatever the resampler's chunking."""

    script: list[float] = field(default_factory=list)
    calls: int = 0

    def new_stream(self) -> ScriptedVad:
        return self

    def probabilities(self, audio: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], list[Any]]:
        if audio.size == 0:
            return np.zeros(0, dtype=np.float32), []
        p = self.script[self.calls] if self.calls < len(self.script) else 0.0
        self.calls += 1
        level = 0.3 if p >= 0.5 else 0.0
        return np.array([p], dtype=np.float32), [np.full(WINDOW, level, dtype=np.float32)]


@dataclass
class Sink:
    """An outbox's ``send``: keeps every message as sent."""

    sent: list[str] = field(default_factory=list)

    async def __call__(self, text: str) -> None:
        self.sent.append(text)

    def types(self) -> list[str]:
        import json

        return [json.loads(t)["type"] for t in self.sent]


@asynccontextmanager
async def services(
    asr: FakeAsr | None = None, vad: Any = None, settings: Settings | None = None
) -> AsyncIterator[Services]:
    """A Services record with a running batcher over ``asr`` (a FakeAsr by default)."""
    engine = asr or FakeAsr()
    s = settings or make_settings()
    batcher: MicroBatcher[AsrRequest, AsrResult] = MicroBatcher(
        "asr", lambda _key, requests: engine.transcribe_batch(requests), max_batch=1, max_wait_s=0.0
    )
    async with batcher:
        yield Services(
            settings=s,
            vad=vad or ScriptedVad(),
            asr=engine,
            asr_batcher=batcher,
            tokens=TokenService(JWT_SECRET, 60.0),
            keys=KeyRing(s.api_keys),
            backend=MemoryBackend(),
            metrics=Metrics(),
        )
