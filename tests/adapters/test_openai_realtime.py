"""OpenAI Realtime transcription sessions with the official ``openai`` SDK, unmodified except for its base
URLs, against a real server with the real tiny.en model; and bad input answered with ``error`` events."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from support import API_KEY, resample_pcm, silence, to_bytes

from streamer_bench.wer import words as normalized_words

from .conftest import Sentence, http_base, ws_base

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]
RATE = 24000
CHUNK = RATE // 10  # 100 ms
TRANSCRIPTION = {"intent": "transcription"}


def _client(server: TestServer, api_key: str = API_KEY) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=api_key, base_url=f"{http_base(server)}/v1", websocket_base_url=f"{ws_base(server)}/v1"
    )


def _b64(samples: np.ndarray) -> str:
    return base64.b64encode(to_bytes(samples)).decode()


async def _append_all(connection: Any, samples: np.ndarray) -> None:
    for i in range(0, samples.size, CHUNK):
        await connection.input_audio_buffer.append(audio=_b64(samples[i : i + CHUNK]))


async def _until(connection: Any, kind: str, seen: list[Any]) -> Any:
    """Events (into ``seen``) until one of ``kind``."""
    async with asyncio.timeout(30):
        async for event in connection:
            seen.append(event)
            if event.type == kind:
                return event
    raise AssertionError(f"the connection closed before {kind}")


async def test_server_vad_session_transcribes_with_append_only_deltas(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    audio = resample_pcm(sentence.samples, RATE)
    seen: list[Any] = []
    async with _client(server) as client, client.realtime.connect(extra_query=TRANSCRIPTION) as connection:
        created = await _until(connection, "session.created", seen)
        assert created.session.type == "transcription"
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": RATE},
                        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                        "noise_reduction": None,  # (near_field or far_field are refused: not applied)
                    }
                },
            }
        )
        await _append_all(connection, audio)
        completed = await _until(connection, "conversation.item.input_audio_transcription.completed", seen)
    kinds = [e.type for e in seen]
    assert kinds.index("session.updated") < kinds.index("input_audio_buffer.speech_started")
    started = next(e for e in seen if e.type == "input_audio_buffer.speech_started")
    stopped = next(e for e in seen if e.type == "input_audio_buffer.speech_stopped")
    committed = next(e for e in seen if e.type == "input_audio_buffer.committed")
    assert started.item_id == stopped.item_id == committed.item_id == completed.item_id
    assert sentence.start_s * 1000 - 400 <= started.audio_start_ms <= sentence.start_s * 1000
    assert sentence.end_s * 1000 <= stopped.audio_end_ms <= sentence.end_s * 1000 + 1000
    assert set(sentence.content_words) <= set(normalized_words(completed.transcript))
    assert completed.usage.type == "duration" and 1.5 < completed.usage.seconds < 3.0
    # the deltas only ever grow the transcript: together they are exactly it
    deltas = [e.delta for e in seen if e.type == "conversation.item.input_audio_transcription.delta"]
    assert deltas and "".join(deltas) == completed.transcript


async def test_a_client_secret_opens_one_manual_commit_session(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    async with _client(server) as client:
        secret = await client.realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": 60},
            session={
                "type": "transcription",
                "audio": {"input": {"transcription": {"language": "en"}, "turn_detection": None}},
            },
        )
    assert secret.value.startswith("ek_") and secret.session.type == "transcription"
    # nothing ends an utterance but the commit: the pause between words and the silence after do not
    audio = resample_pcm(np.concatenate([sentence.samples, silence(1.0)]), RATE)
    seen: list[Any] = []
    async with _client(server, api_key=secret.value) as ephemeral:
        async with ephemeral.realtime.connect(extra_query=TRANSCRIPTION) as connection:
            created = await _until(connection, "session.created", seen)
            assert created.session.audio.input.turn_detection is None
            await _append_all(connection, audio)
            await connection.input_audio_buffer.commit()
            committed = await _until(connection, "input_audio_buffer.committed", seen)
            completed = await _until(
                connection, "conversation.item.input_audio_transcription.completed", seen
            )
            # a commit of silence is an item with an empty transcript
            await _append_all(connection, silence(0.5, RATE))
            await connection.input_audio_buffer.commit()
            empty = await _until(connection, "conversation.item.input_audio_transcription.completed", seen)
        assert not any(e.type.startswith("input_audio_buffer.speech_") for e in seen)
        assert committed.item_id == completed.item_id
        assert set(sentence.content_words) <= set(normalized_words(completed.transcript))
        assert empty.transcript == "" and empty.item_id != completed.item_id
        # single use: the secret opened its session and opens no other
        with pytest.raises(Exception, match="401"):
            async with ephemeral.realtime.connect(extra_query=TRANSCRIPTION) as again:
                await again.recv()


async def _error(ws: aiohttp.ClientWebSocketResponse, event: dict[str, Any]) -> dict[str, Any]:
    await ws.send_str(json.dumps(event))
    async with asyncio.timeout(10):
        while True:
            message = json.loads((await ws.receive()).data)
            if message["type"] == "error":
                error: dict[str, Any] = message["error"]
                return error


async def test_bad_input_gets_error_events_and_the_session_goes_on(make_server: ServerFactory) -> None:
    server = await make_server()
    async with _client(server, api_key="not-a-key") as client:
        with pytest.raises(Exception, match="401"):
            async with client.realtime.connect(extra_query=TRANSCRIPTION) as connection:
                await connection.recv()
    url = f"{ws_base(server)}/v1/realtime?model=gpt-realtime&intent=transcription"
    browser = ["realtime", f"openai-insecure-api-key.{API_KEY}"]
    async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=browser) as ws:
        assert ws.protocol == "realtime"
        assert json.loads((await ws.receive()).data)["type"] == "session.created"
        bad = await _error(
            ws, {"type": "input_audio_buffer.append", "audio": "not base64!", "event_id": "e1"}
        )
        assert bad["param"] == "audio" and bad["event_id"] == "e1" and "base64" in bad["message"]
        big = _b64(np.zeros(RATE * 11, dtype="<i2"))  # 11 s in one append: over the 10 s an append takes
        too_large = await _error(ws, {"type": "input_audio_buffer.append", "audio": big})
        assert too_large["code"] == "frame_too_large"
        update = {"type": "session.update", "session": {"type": "transcription"}}
        update["session"]["audio"] = {"input": {"format": {"type": "audio/pcm", "rate": 1000}}}
        rate = await _error(ws, update)
        assert rate["param"] == "session.audio.input.format.rate"
        update["session"]["audio"] = {"input": {"format": {"type": "audio/pcmu", "rate": 16000}}}
        g711 = await _error(ws, update)  # G.711 is 8 kHz only
        assert g711["param"] == "session.audio.input.format.rate" and "8000" in g711["message"]
        unknown = await _error(ws, {"type": "response.create"})
        assert unknown["param"] == "type" and unknown["type"] == "invalid_request_error"
        typo = await _error(ws, {"type": "input_audio_buffer.commit", "evnt_id": "x"})
        assert typo["code"] == "unknown_parameter"
        empty = await _error(ws, {"type": "input_audio_buffer.commit"})
        assert empty["code"] == "input_audio_buffer_commit_empty"
        # still serving
        await ws.send_str(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads((await ws.receive()).data)["type"] == "input_audio_buffer.cleared"
    # a conversation (no intent): refused before the upgrade, in OpenAI's error shape
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{ws_base(server)}/v1/realtime?model=gpt-realtime", protocols=browser)
        assert refused.value.status == 400
        headers = {"Authorization": f"Bearer {API_KEY}", "Upgrade": "websocket", "Connection": "Upgrade"}
        async with http.get(
            f"{http_base(server)}/v1/realtime?model=gpt-realtime", headers=headers
        ) as response:
            error = (await response.json())["error"]
            assert error["param"] == "intent" and error["type"] == "invalid_request_error"


async def test_the_beta_transcription_session_shape(make_server: ServerFactory) -> None:
    server = await make_server()
    async with _client(server) as client:
        created = await client.beta.realtime.transcription_sessions.create(
            input_audio_format="pcm16",
            input_audio_transcription={"model": "whisper-1", "language": "en"},
            turn_detection={"type": "server_vad", "silence_duration_ms": 600},
        )
    assert created.client_secret.value.startswith("ek_")
    url = f"{ws_base(server)}/v1/realtime"
    headers = {"Authorization": f"Bearer {created.client_secret.value}", "OpenAI-Beta": "realtime=v1"}
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        first = json.loads((await ws.receive()).data)
        assert first["type"] == "transcription_session.created"
        assert first["session"]["turn_detection"]["silence_duration_ms"] == 600
        await ws.send_str(
            json.dumps({"type": "transcription_session.update", "session": {"turn_detection": None}})
        )
        updated = json.loads((await ws.receive()).data)
        assert updated["type"] == "transcription_session.updated"
        assert updated["session"]["turn_detection"] is None


async def test_clear_forgets_the_open_utterance(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await make_server()
    audio = resample_pcm(sentence.samples, RATE)
    half = int((sentence.start_s + 0.8) * RATE)  # into the sentence: its utterance is open
    seen: list[Any] = []
    async with _client(server) as client, client.realtime.connect(extra_query=TRANSCRIPTION) as connection:
        await connection.session.update(
            session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        )
        await _until(connection, "session.updated", seen)
        await _append_all(connection, audio[:half])
        await connection.input_audio_buffer.clear()
        await _until(connection, "input_audio_buffer.cleared", seen)
        await _append_all(connection, audio)
        await connection.input_audio_buffer.commit()
        completed = await _until(connection, "conversation.item.input_audio_transcription.completed", seen)
    # one item: the buffer appended after the clear (all of it: manual turns are not cut to speech),
    # without the cleared half
    assert sum(e.type == "input_audio_buffer.committed" for e in seen) == 1
    assert set(sentence.content_words) <= set(normalized_words(completed.transcript))
    assert completed.usage.seconds == pytest.approx(len(audio) / RATE, abs=0.05)
