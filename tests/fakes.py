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


class FakeClock:
    """A clock that only moves when told to: ``clock.advance(2.5)``; call it to read the time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards: real monotonic clocks cannot)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance({seconds}))")
        self._now += seconds

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
