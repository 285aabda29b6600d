"""OpenAI ``response_format=diarized_json`` with the official ``openai`` SDK on the committed two-voice
dialogue, against a real server (tiny.en, Silero, the GE2E encoder on its worker)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import openai
import pytest
from aiohttp.test_utils import TestServer
from encoders import encode
from openai import AsyncOpenAI
from support import API_KEY, make_settings, skip_or_fail

from streamer.adapters.openai.diarized import speaker_name
from streamer.pipeline.speakers_weights import default_wheel_path

from .dialogue import best_mapping_share, two_voices

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]


def _client(server: TestServer) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=API_KEY, base_url=f"http://{server.host}:{server.port}/v1")


async def test_diarized_json_has_speaker_segments(make_server: ServerFactory) -> None:
    if not default_wheel_path().is_file():
        skip_or_fail("the speaker encoder's weights are not in the cache (run scripts/setup.sh)")
    dialogue = two_voices(13_300)
    server = await make_server()
    async with _client(server) as client:
        result = await client.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize",
            file=("dialogue.wav", encode(dialogue.samples, 16000, "wav")),
            response_format="diarized_json",
            chunking_strategy="auto",
        )
    assert result.task == "transcribe" and result.duration == pytest.approx(13.3, abs=0.1)
    segments = result.segments
    assert segments and {s.speaker for s in segments} >= {"A", "B"}
    assert all(s.type == "transcript.text.segment" and s.text for s in segments)
    assert result.text == " ".join(s.text for s in segments)
    # each segment's speaker is the voice heard over most of it
    pairs = [(dialogue.speaker_at((s.start + s.end) * 500), s.speaker) for s in segments]
    labels = sorted({p for _, p in pairs})
    numbered = [(t, labels.index(p)) for t, p in pairs]
    assert best_mapping_share(numbered) >= 0.75, pairs


async def test_diarized_json_without_the_encoder_is_refused(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(speaker_weights="off"))
    async with _client(server) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.audio.transcriptions.create(
                model="whisper-1",
                file=("a.wav", encode(two_voices(1_000).samples, 16000, "wav")),
                response_format="diarized_json",
            )
    assert "diarize" in str(refused.value)


def test_speaker_names_run_like_spreadsheet_columns() -> None:
    assert [speaker_name(i) for i in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]
    assert speaker_name(None) == "unknown"
