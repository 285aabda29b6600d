"""The multilingual ``base`` model, loaded once for the language tests, and the bilingual clip."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import FIXTURES, read_pcm16

from streamer.app import load_asr_engine
from streamer.client import Stream
from streamer.config import Settings
from streamer.pipeline.asr import AsrEngine
from streamer_bench.bilingual import Bilingual, load


@pytest.fixture(scope="session")
def base_engine(tmp_path_factory: pytest.TempPathFactory) -> AsrEngine:
    cache = tmp_path_factory.mktemp("model-cache")
    return load_asr_engine(Settings(asr_model="base", device="cpu", model_cache_dir=str(cache)))


@pytest.fixture(scope="session")
def bilingual() -> Bilingual:
    """English (piper) and Japanese (Kokoro) sentences taking turns: en, ja, en, ja (manifest.json)."""
    speech = load(FIXTURES / "bilingual")
    assert [u.language for u in speech.utterances] == ["en", "ja", "en", "ja"]
    return speech


def bilingual_pcm() -> bytes:
    return read_pcm16("bilingual/bilingual.wav").tobytes()


async def send_audio(stream: Stream, pcm: bytes, chunk_ms: int = 100) -> None:
    """100 ms frames back to back (the test settings allow 20x real time with a 30 s burst)."""
    step = 16000 * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        await stream.ws.send_bytes(pcm[i : i + step])


async def events_until_closed(stream: Stream, timeout: float) -> list[dict[str, Any]]:
    """Every event up to ``session.closed``; fails after ``timeout`` seconds."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not events or events[-1]["type"] != "session.closed":
            event = await stream.receive(timeout=timeout)
            assert event is not None, [e["type"] for e in events]
            events.append(event)
    return events
