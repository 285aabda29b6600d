"""OpenAI Realtime with the diarizing transcription model (``gpt-4o-transcribe-diarize``), with the official
``openai`` SDK: each speaker's part of an item comes as a ``.segment`` event with its label, and the
item's ``.completed`` carries the parts' text (tiny.en, Silero, the GE2E encoder, the two-voice dialogue)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.types.realtime import ConversationItemInputAudioTranscriptionSegment
from support import API_KEY, make_settings, resample_pcm, silence, skip_or_fail, to_bytes

from streamer.pipeline.speakers_weights import default_wheel_path

from .dialogue import best_mapping_share, two_voices
from .test_deepgram_live import UNTIL_MS, ServerFactory

pytestmark = pytest.mark.slow

RATE = 24000
SEGMENT = "conversation.item.input_audio_transcription.segment"
COMPLETED = "conversation.item.input_audio_transcription.completed"


async def _events_until_quiet(connection: Any, quiet_s: float = 6.0) -> list[Any]:
    seen: list[Any] = []
    async with asyncio.timeout(120):
        while True:
            try:
                event = await asyncio.wait_for(connection.recv(), quiet_s)
            except TimeoutError:
                return seen
            seen.append(event)


async def test_the_diarizing_model_sends_a_labelled_segment_per_speaker(make_server: ServerFactory) -> None:
    if not default_wheel_path().is_file():
        skip_or_fail("the speaker encoder's weights are not in the cache (run scripts/setup.sh)")
    dialogue = two_voices(UNTIL_MS)
    server = await make_server()
    audio = resample_pcm(dialogue.samples, RATE)
    base = f"{server.host}:{server.port}"
    client = AsyncOpenAI(api_key=API_KEY, base_url=f"http://{base}/v1", websocket_base_url=f"ws://{base}/v1")
    async with client, client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": RATE},
                        "transcription": {"model": "gpt-4o-transcribe-diarize", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    }
                },
            }
        )
        step = RATE // 10
        for i in range(0, audio.size, step):
            await connection.input_audio_buffer.append(
                audio=base64.b64encode(to_bytes(audio[i : i + step])).decode()
            )
        tail = resample_pcm(silence(1.5), RATE)
        await connection.input_audio_buffer.append(audio=base64.b64encode(to_bytes(tail)).decode())
        seen = await _events_until_quiet(connection)
    segments = [e for e in seen if e.type == SEGMENT]
    assert segments and all(isinstance(e, ConversationItemInputAudioTranscriptionSegment) for e in segments)
    assert {s.speaker for s in segments} >= {"A", "B"}
    # every committed item ends in one completed, whose transcript is its segments' text in order
    committed = [e.item_id for e in seen if e.type == "input_audio_buffer.committed"]
    completed = {e.item_id: e for e in seen if e.type == COMPLETED}
    assert sorted(completed) == sorted(committed) and len(completed) == len(
        [e for e in seen if e.type == COMPLETED]
    )
    for item_id, done in completed.items():
        texts = [s.text for s in segments if s.item_id == item_id and s.text]
        assert done.transcript == " ".join(texts), (done.transcript, texts)
    # a diarizing model streams no deltas: the segments are the text
    assert not [e for e in seen if e.type == "conversation.item.input_audio_transcription.delta"]
    # the labels follow the voices: a segment's middle, in the session's time, names its speaker
    starts = {e.item_id: e.audio_start_ms for e in seen if e.type == "input_audio_buffer.speech_started"}
    pairs = [
        (dialogue.speaker_at(starts[s.item_id] + (s.start + s.end) * 500), ord(s.speaker) - ord("A"))
        for s in segments
        if s.text
    ]
    assert best_mapping_share(pairs) >= 0.8, pairs
    # a quick reply inside one utterance is its own segment of the same item
    assert any(len({s.speaker for s in segments if s.item_id == item}) > 1 for item in completed), [
        (s.item_id, s.speaker, s.text) for s in segments
    ]


async def test_the_diarizing_model_without_the_encoder_is_an_error_event(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(speaker_weights="off"))
    base = f"{server.host}:{server.port}"
    client = AsyncOpenAI(api_key=API_KEY, base_url=f"http://{base}/v1", websocket_base_url=f"ws://{base}/v1")
    async with client, client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe-diarize"}}},
            },
            event_id="ev_diarize",
        )
        seen = await _events_until_quiet(connection, quiet_s=2.0)
    errors = [e for e in seen if e.type == "error"]
    assert len(errors) == 1 and "diarize" in errors[0].error.message, seen
    assert errors[0].error.event_id == "ev_diarize"
    assert not [e for e in seen if e.type == "session.updated"]
