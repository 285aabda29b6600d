"""Issue 21 item 3, in part: the OpenAI buffer a server VAD commit emptied is empty to a client commit.

The VAD is scripted (one window scored per append), so the test knows the append that ends the
utterance; a no-op ``session.update`` after each append is answered in order behind that append's
events, which tells the test when ``speech_stopped`` has been sent.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from openai import AsyncOpenAI
from session.doubles import ScriptedVad
from support import API_KEY, silence, to_bytes

from .conftest import http_base, ws_base

ServerFactory = Callable[..., Awaitable[TestServer]]
RATE = 24000
CHUNK = silence(0.1, RATE)  # the audio is not listened to: the script scores it
SESSION = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": RATE},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 200},
        }
    },
}


async def _next(connection: Any, kinds: set[str], seen: list[str]) -> Any:
    async with asyncio.timeout(10):
        async for event in connection:
            seen.append(event.type)
            if event.type in kinds:
                return event
    raise AssertionError(f"the connection closed before {kinds}")


async def test_a_commit_after_the_vad_committed_the_buffer_is_empty(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr(text="Hello there."), vad=ScriptedVad([0.9] * 12))
    client = AsyncOpenAI(
        api_key=API_KEY, base_url=f"{http_base(server)}/v1", websocket_base_url=f"{ws_base(server)}/v1"
    )
    seen: list[str] = []
    async with client, client.realtime.connect(extra_query={"intent": "transcription"}) as c:
        await c.session.update(session=SESSION)
        await _next(c, {"session.updated"}, seen)
        for _ in range(60):  # voice, then silence until the VAD ends the utterance
            await c.input_audio_buffer.append(audio=base64.b64encode(to_bytes(CHUNK)).decode())
            await c.session.update(session=SESSION)
            if (await _next(c, {"session.updated", "input_audio_buffer.speech_stopped"}, seen)).type != (
                "session.updated"
            ):
                await _next(c, {"session.updated"}, seen)
                break
        else:
            pytest.fail(f"the VAD never ended the utterance: {seen}")
        await c.input_audio_buffer.commit()
        answer = await _next(c, {"error", "input_audio_buffer.committed"}, seen)
    assert answer.type == "error" and answer.error.code == "input_audio_buffer_commit_empty", seen
