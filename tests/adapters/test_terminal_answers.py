"""Issue 21, items 1 and 4: every stopped segment ends in one terminal answer on every surface (the
official SDKs wait for it), and each surface keeps its vendor's idle rule.

A short burst of real speech with an engine that hears nothing in it (``FakeAsr(text="")``) is the segment
the emitter drops: before, the client saw it stop and then nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from openai import AsyncOpenAI
from support import API_KEY, base_url, make_settings, resample_pcm, silence, to_bytes

from .conftest import Sentence, http_base, ws_base

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]

ServerFactory = Callable[..., Awaitable[TestServer]]
RATE = 24000  # OpenAI's
WAIT_S = 20.0  # every wait is bounded: a hang fails its test


def speech(sentence: Sentence) -> np.ndarray:
    """0.4 s of the sentence's speech after a short silence: too little speech for a lost sentence."""
    start = int(sentence.start_s * 16000) + 3200
    return np.concatenate([silence(0.3), sentence.samples[start : start + 6400]])


def burst(sentence: Sentence) -> np.ndarray:
    """That speech and the silence that ends its segment."""
    return np.concatenate([speech(sentence), silence(1.5)])


def _openai(server: TestServer) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=API_KEY, base_url=f"{http_base(server)}/v1", websocket_base_url=f"{ws_base(server)}/v1"
    )


async def _until(connection: Any, kind: str, seen: list[Any]) -> Any:
    async with asyncio.timeout(WAIT_S):
        async for event in connection:
            seen.append(event)
            if event.type == kind:
                return event
    raise AssertionError(f"the connection closed before {kind}")


async def _openai_vad(connection: Any) -> None:
    await connection.session.update(
        session={
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                }
            },
        }
    )


async def _append(connection: Any, samples: np.ndarray) -> None:
    step = RATE // 10
    for i in range(0, samples.size, step):
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(to_bytes(samples[i : i + step])).decode()
        )


async def test_openai_a_dropped_segment_still_completes(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server(asr_engine=FakeAsr(text=""))
    seen: list[Any] = []
    async with (
        _openai(server) as client,
        client.realtime.connect(extra_query={"intent": "transcription"}) as c,
    ):
        await _until(c, "session.created", seen)
        await _openai_vad(c)
        await _append(c, resample_pcm(burst(sentence), RATE))
        stopped = await _until(c, "input_audio_buffer.speech_stopped", seen)
        completed = await _until(c, "conversation.item.input_audio_transcription.completed", seen)
    assert completed.item_id == stopped.item_id and completed.transcript == ""


@contextlib.asynccontextmanager
async def _deepgram(server: TestServer) -> AsyncIterator[AsyncDeepgramClient]:
    base, ws = http_base(server), ws_base(server)
    environment = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    async with httpx.AsyncClient() as http:
        yield AsyncDeepgramClient(environment=environment, httpx_client=http, api_key=API_KEY)


async def test_deepgram_a_finalize_that_closed_a_dropped_segment_is_answered(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server(asr_engine=FakeAsr(text=""))
    speaking = speech(sentence)  # and no pause: the segment is open when the Finalize comes
    async with (
        _deepgram(server) as client,
        client.listen.v1.connect(
            model="nova-3", encoding="linear16", sample_rate=16000, channels=1, vad_events="true"
        ) as socket,
    ):
        for i in range(0, speaking.size, 1600):
            await socket.send_media(to_bytes(speaking[i : i + 1600]))
        messages: list[Any] = []
        async with asyncio.timeout(WAIT_S):
            async for message in socket:  # the segment is open once the server says so
                messages.append(message)
                if message.type == "SpeechStarted":
                    break
            await socket.send_finalize()
            async for message in socket:
                messages.append(message)
                if message.type == "Results" and message.from_finalize:
                    break
        await socket.send_close_stream()
    answer = messages[-1]
    assert answer.is_final and answer.channel.alternatives[0].transcript == ""


async def test_protocol_v1_a_dropped_segment_gets_an_empty_final(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server(asr_engine=FakeAsr(text=""))
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/sessions", headers=auth, json={"language": "en"}) as r:
            token = (await r.json())["token"]
        url = f"{base_url(server)}/v1/stream?token={token}".replace("http", "ws", 1)
        async with http.ws_connect(url) as ws:
            audio = to_bytes(burst(sentence))
            for i in range(0, len(audio), 3200):
                await ws.send_bytes(audio[i : i + 3200])
            got: dict[str, Any] = {}
            async with asyncio.timeout(WAIT_S):
                while (message := json.loads((await ws.receive()).data))["type"] != "transcript.final":
                    got[message["type"]] = message
    assert "speech.stopped" in got
    assert message["text"] == "" and message["dropped"] in ("too_short", "nonspeech")
    assert message["segment_id"] == got["speech.stopped"]["segment_id"]


async def test_openai_a_silent_push_to_talk_client_is_not_idle(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(idle_timeout_s=0.5), asr_engine=FakeAsr())
    seen: list[Any] = []
    async with (
        _openai(server) as client,
        client.realtime.connect(extra_query={"intent": "transcription"}) as c,
    ):
        await _until(c, "session.created", seen)
        await asyncio.sleep(1.5)  # three idle timeouts of nothing at all (not a synchronization)
        await _openai_vad(c)
        updated = await _until(c, "session.updated", seen)
    assert updated.session.type == "transcription"


@pytest.mark.parametrize("pinging", [False, True])
async def test_deepgram_idle_closes_with_net_0001_and_1011(make_server: ServerFactory, pinging: bool) -> None:
    """Deepgram closes after 10 s without audio or KeepAlive; a WebSocket ping frame is neither (its docs):
    the server answers it, and still closes."""
    server = await make_server(make_settings(idle_timeout_s=0.5), asr_engine=FakeAsr())
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{base_url(server)}/v1/listen?encoding=linear16&sample_rate=16000",
            headers={"Authorization": f"Token {API_KEY}"},
            autoping=False,
            heartbeat=None,
        ) as ws,
    ):
        async with asyncio.timeout(WAIT_S):
            while not ws.closed:  # with pinging, a ping every 0.1 s (answered), well under the message rate
                if pinging:
                    await ws.ping()
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
                assert msg.type in (aiohttp.WSMsgType.PONG, aiohttp.WSMsgType.TEXT), msg
                await asyncio.sleep(0.1)
    assert ws.close_code == 1011
