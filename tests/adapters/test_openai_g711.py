"""OpenAI Realtime with G.711 and appends of any size, through the official ``openai`` SDK against a real
server with the real tiny.en model (issue 19: ``audio/pcmu`` and ``g711_*`` were refused, and an append
over one 1 s frame was ``frame_too_large``)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from support import API_KEY, resample_pcm, silence

from streamer.client_audio import alaw_encode, mulaw_encode
from streamer_bench.wer import words as normalized_words

from .conftest import Sentence, http_base, ws_base

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]
TRANSCRIPTION = {"intent": "transcription"}
COMPLETED = "conversation.item.input_audio_transcription.completed"


def _client(server: TestServer) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=API_KEY, base_url=f"{http_base(server)}/v1", websocket_base_url=f"{ws_base(server)}/v1"
    )


def _telephone(sentence: Sentence) -> np.ndarray:
    """The sentence and a second of silence after it, as 8 kHz PCM16."""
    return resample_pcm(np.concatenate([sentence.samples, silence(1.0)]), 8000)


async def _until(connection: Any, kind: str, seen: list[Any]) -> Any:
    async with asyncio.timeout(60):
        async for event in connection:
            seen.append(event)
            assert event.type != "error", event
            if event.type == kind:
                return event
    raise AssertionError(f"the connection closed before {kind}")


async def test_pcmu_in_pieces_of_any_size_with_the_sdk(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    audio = mulaw_encode(_telephone(sentence))
    rng = random.Random(711)
    seen: list[Any] = []
    async with _client(server) as client, client.realtime.connect(extra_query=TRANSCRIPTION) as connection:
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    }
                },
            }
        )
        updated = await _until(connection, "session.updated", seen)
        assert updated.session.audio.input.format.type == "audio/pcmu"
        at = 0
        while at < len(audio):  # one byte to half a second a piece, odd counts included: G.711 is bytes
            size = rng.randint(1, 4000)
            await connection.input_audio_buffer.append(audio=base64.b64encode(audio[at : at + size]).decode())
            at += size
        completed = await _until(connection, COMPLETED, seen)
    assert not [e for e in seen if e.type == "error"]
    assert set(sentence.content_words) <= set(normalized_words(completed.transcript))


async def test_beta_g711_alaw_and_one_append_of_the_whole_sentence(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    async with _client(server) as client:
        created = await client.beta.realtime.transcription_sessions.create(
            input_audio_format="g711_alaw",
            input_audio_transcription={"model": "whisper-1", "language": "en"},
            turn_detection=None,
        )
    assert created.input_audio_format == "g711_alaw"
    audio = alaw_encode(_telephone(sentence))  # 4.5 s in one append: far over one frame
    url = f"{ws_base(server)}/v1/realtime"
    headers = {"Authorization": f"Bearer {created.client_secret.value}", "OpenAI-Beta": "realtime=v1"}
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        first = json.loads((await ws.receive()).data)
        assert first["session"]["input_audio_format"] == "g711_alaw"
        append = {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}
        await ws.send_str(json.dumps(append))
        await ws.send_str(json.dumps({"type": "input_audio_buffer.commit"}))
        async with asyncio.timeout(60):
            while (event := json.loads((await ws.receive()).data))["type"] != COMPLETED:
                assert event["type"] != "error", event
    assert set(sentence.content_words) <= set(normalized_words(event["transcript"]))
