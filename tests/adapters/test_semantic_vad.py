"""Issue 21 item 8: ``semantic_vad``'s eagerness sets the silence after which the turn ends.

The VAD is scripted (one window scored per append), so the number of silent appends before
``speech_stopped`` is the silence the turn needed; a no-op ``session.update`` after each append is
answered in order behind that append's events.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from openai import AsyncOpenAI
from session.doubles import ScriptedVad
from support import API_KEY, silence, to_bytes

from .conftest import http_base, ws_base

ServerFactory = Callable[..., Awaitable[TestServer]]
RATE = 24000
CHUNK = base64.b64encode(to_bytes(silence(0.1, RATE))).decode()  # scored by the script, not listened to
VOICED = 12


def _session(eagerness: str) -> dict[str, Any]:
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": {"type": "semantic_vad", "eagerness": eagerness},
            }
        },
    }


async def _next(connection: Any, kinds: set[str]) -> Any:
    async with asyncio.timeout(10):
        async for event in connection:
            if event.type in kinds:
                return event
    raise AssertionError(f"the connection closed before {kinds}")


async def _silent_windows_to_end(make_server: ServerFactory, eagerness: str) -> tuple[int, Any]:
    vad = ScriptedVad([0.9] * VOICED)
    server = await make_server(asr_engine=FakeAsr(text="Hello there."), vad=vad)
    client = AsyncOpenAI(
        api_key=API_KEY, base_url=f"{http_base(server)}/v1", websocket_base_url=f"{ws_base(server)}/v1"
    )
    session = _session(eagerness)
    async with client, client.realtime.connect(extra_query={"intent": "transcription"}) as c:
        await c.session.update(session=session)
        updated = await _next(c, {"session.updated"})
        for n in range(200):
            await c.input_audio_buffer.append(audio=CHUNK)
            await c.session.update(session=session)
            if (await _next(c, {"session.updated", "input_audio_buffer.speech_stopped"})).type != (
                "session.updated"
            ):
                return n + 1 - VOICED, updated
    raise AssertionError("the turn never ended")


async def test_eagerness_sets_the_silence_that_ends_a_turn(make_server: ServerFactory) -> None:
    high, updated = await _silent_windows_to_end(make_server, "high")
    medium, _ = await _silent_windows_to_end(make_server, "medium")
    turns = updated.session.audio.input.turn_detection
    assert (turns.type, turns.eagerness) == ("semantic_vad", "high")
    # 32 ms windows: high ends after about 300 ms of silence, medium after about 700 ms
    assert 8 <= high <= 14 and 20 <= medium <= 28, (high, medium)
