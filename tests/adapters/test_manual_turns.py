"""Issue 21 item 3: with ``turn_detection: null`` the span between two commits is one item.

No VAD gating (silence is part of the span, as OpenAI transcribes what it was given), no split at the
15 s maximum utterance, and a span longer than the model's 30 s window decoded in windows whose texts
join into the one transcription. The double answers one word per second of audio it is given, so the
completed text says how much of the span was transcribed.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from openai import AsyncOpenAI
from support import API_KEY, make_settings, to_bytes

from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.pipeline.audio import MODEL_RATE

from .conftest import http_base, ws_base

ServerFactory = Callable[..., Awaitable[TestServer]]
RATE = 24000
SESSION = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": RATE},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": None,
        }
    },
}
STEP = 100  # int16 levels between seconds
COMPLETED = "conversation.item.input_audio_transcription.completed"


def _word(k: int) -> str:
    return chr(ord("a") + k // 26) + chr(ord("a") + k % 26) + "x"


def _second(k: int) -> bytes:
    """Second ``k`` of the span: a level the double reads back as its word (not speech to the VAD)."""
    return to_bytes(np.full(RATE, (k + 1) * STEP, dtype="<i2"))


@dataclass
class _LevelsAsr(FakeAsr):
    """Reads each second's level back as its word: a word for each second mostly inside a request, so
    the text says exactly which audio each request held (cut windows included)."""

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        self.batches.append(len(requests))
        # clipped to 30 s, as the engine clips what it cannot hear at once
        return [AsrResult(text=self._words(r.audio[: 30 * MODEL_RATE]), language="en") for r in requests]

    @staticmethod
    def _words(audio: npt.NDArray[np.float32]) -> str:
        levels = np.rint(audio * 32768 / STEP).astype(int) - 1
        values, counts = np.unique(levels[levels >= 0], return_counts=True)
        return " ".join(_word(int(k)) for k, n in zip(values, counts, strict=True) if n > MODEL_RATE // 2)


async def _until(connection: Any, kind: str, seen: list[Any]) -> Any:
    async with asyncio.timeout(20):
        async for event in connection:
            seen.append(event)
            if event.type == kind:
                return event
    raise AssertionError(f"the connection closed before {kind}")


async def _commit_once(make_server: ServerFactory, seconds: int) -> tuple[list[Any], Any]:
    # the whole span at once: more than the default real-time burst
    server = await make_server(make_settings(realtime_burst_s=120.0), asr_engine=_LevelsAsr())
    client = AsyncOpenAI(
        api_key=API_KEY, base_url=f"{http_base(server)}/v1", websocket_base_url=f"{ws_base(server)}/v1"
    )
    seen: list[Any] = []
    async with client, client.realtime.connect(extra_query={"intent": "transcription"}) as c:
        await c.session.update(session=SESSION)
        await _until(c, "session.updated", seen)
        for k in range(seconds):
            await c.input_audio_buffer.append(audio=base64.b64encode(_second(k)).decode())
        await c.input_audio_buffer.commit()
        completed = await _until(c, COMPLETED, seen)
        await c.session.update(session=SESSION)  # answered after anything the commit still had to say
        await _until(c, "session.updated", seen)
    return [e.type for e in seen], completed


async def test_twenty_seconds_committed_once_are_one_item(make_server: ServerFactory) -> None:
    types, completed = await _commit_once(make_server, 20)
    assert types.count("input_audio_buffer.committed") == 1 and types.count(COMPLETED) == 1, types
    assert "input_audio_buffer.speech_started" not in types
    # all of it, in order: not gated to speech, not split at 15 s
    assert completed.transcript == " ".join(_word(k) for k in range(20))


async def test_a_span_longer_than_the_model_window_is_decoded_in_windows_into_one_item(
    make_server: ServerFactory,
) -> None:
    types, completed = await _commit_once(make_server, 45)
    assert types.count("input_audio_buffer.committed") == 1 and types.count(COMPLETED) == 1, types
    assert completed.transcript == " ".join(_word(k) for k in range(45))  # two windows, joined
