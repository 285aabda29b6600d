"""Translation through a real server: a tiny generated NLLB-layout model behind a spy, speech that the real
Silero VAD segments, and helpers to stream it and read what comes back.

The model has random weights (see ``tests/mt/builders.py``), so its output is arbitrary but deterministic;
the tests check what the server does around it: which texts reach the model, in which batches, and which
events carry the results back to which session.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import FakeAsr
from mt import builders
from support import read_pcm16, silence, to_bytes

from streamer.client import Stream
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.pipeline.mt import CT2Translator

from .spy import SpyEngine as SpyEngine

RATE = 16000
FINAL_TYPES = ("transcript.final", "translation.final")


@pytest.fixture(scope="session")
def nllb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NLLB-200-layout model with en, es and de (random weights)."""
    return builders.build_nllb(tmp_path_factory.mktemp("models") / "nllb-200-tiny", builders.en_spm())


@pytest.fixture(scope="session")
def nllb(nllb_dir: Path) -> CT2Translator:
    # one intra-op thread, as the server loads MT models (load_mt_engine)
    return CT2Translator(nllb_dir, intra_threads=1)


@dataclass
class NumberingAsr(FakeAsr):
    """``FakeAsr`` whose every answer ends in its own number, spelled in words the model's SentencePiece
    knows (``"the red cat sees my old dog fish"``): no two answers share a text, so the translation cache
    never answers in the model's place and each final has a translation of its own."""

    text: str = "the red cat sees my old dog"
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        results = super().transcribe_batch(requests)
        return [
            AsrResult(f"{r.text} {_spell(next(self._numbers))}", r.language, avg_logprob=r.avg_logprob)
            for r in results
        ]


def _spell(n: int) -> str:
    """``n`` in base len(EN_WORDS), one word per digit."""
    digits = []
    while True:
        n, digit = divmod(n, len(builders.EN_WORDS))
        digits.append(builders.EN_WORDS[digit])
        if n == 0:
            return " ".join(digits)


def speech(*names: str, gap_s: float = 1.0) -> bytes:
    """English speech fixtures with silence before, between and after: one utterance each for the VAD."""
    parts: list[np.ndarray] = [silence(0.3)]
    for name in names:
        parts += [read_pcm16(name), silence(gap_s)]
    return to_bytes(np.concatenate(parts))


async def send_audio(stream: Stream, pcm: bytes, chunk_ms: int = 100) -> None:
    """Send 100 ms frames back to back (the test settings allow 20x real time with a 30 s burst)."""
    step = RATE * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        await stream.ws.send_bytes(pcm[i : i + step])


Events = list[dict[str, Any]]


async def events_until(stream: Stream, done: Callable[[Events], bool], timeout: float = 20.0) -> Events:
    """Events until ``done(events)`` is true (or the socket closes); fails after ``timeout`` seconds."""
    events: Events = []
    deadline = time.monotonic() + timeout
    while not done(events):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got {[e['type'] for e in events]}"
        event = await stream.receive(timeout=remaining)
        if event is None:
            break
        events.append(event)
    return events


async def events_until_closed(stream: Stream, timeout: float = 20.0) -> Events:
    events = await events_until(
        stream, lambda ev: bool(ev) and ev[-1]["type"] == "session.closed", timeout=timeout
    )
    assert events and events[-1]["type"] == "session.closed", [e["type"] for e in events]
    return events


def results_of(events: Events) -> Events:
    """The transcript.final and translation.final events, in the order they arrived."""
    return [e for e in events if e["type"] in FINAL_TYPES]
