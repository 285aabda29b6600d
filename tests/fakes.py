"""Fakes with knobs, shaped like the real engines (see ``streamer.pipeline.asr.AsrEngine``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from streamer.pipeline.asr import AsrRequest, AsrResult


@dataclass
class FakeAsr:
    """Answers ``text`` for every request after ``delay`` seconds per batch.

    ``fail`` raises on every call; ``hang`` blocks until ``release()``. ``batches`` records the size of
    every call so tests can see batching happen.
    """

    text: str = "hello world"
    delay: float = 0.0
    fail: bool = False
    hang: bool = False
    name: str = "fake"
    multilingual: bool = False
    batches: list[int] = field(default_factory=list)
    _released: threading.Event = field(default_factory=threading.Event)

    def languages(self) -> frozenset[str]:
        return frozenset({"en"})

    def release(self) -> None:
        self._released.set()

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        self.batches.append(len(requests))
        if self.hang:
            self._released.wait(30)
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("fake engine failure")
        return [AsrResult(text=self.text, language="en", avg_logprob=-0.1) for _ in requests]
