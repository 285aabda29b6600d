"""Deepgram live (``/v1/listen``) and temporary tokens (``/v1/auth/grant``) with the official deepgram-sdk,
unmodified except for its environment's base URLs, against a real server with the real tiny.en model."""

from __future__ import annotations

import asyncio
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
from support import API_KEY, to_bytes

from .conftest import Sentence, http_base, ws_base

with warnings.catch_warnings():
    # deepgram-sdk imports websockets' legacy client, which websockets deprecates
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)
    from deepgram import AsyncDeepgramClient
    from deepgram.core.api_error import ApiError
    from deepgram.environment import DeepgramClientEnvironment

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]

ServerFactory = Callable[..., Awaitable[TestServer]]
CHUNK_S = 0.1


@contextlib.asynccontextmanager
async def _client(server: TestServer, **credentials: str) -> AsyncIterator[AsyncDeepgramClient]:
    """The SDK pointed at the test server (its HTTP client closed afterwards)."""
    base, ws = http_base(server), ws_base(server)
    environment = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    async with httpx.AsyncClient() as http:
        yield AsyncDeepgramClient(environment=environment, httpx_client=http, **credentials)


async def _stream(socket: Any, samples: np.ndarray, rate: int = 16000) -> None:
    step = int(rate * CHUNK_S)
    for i in range(0, samples.size, step):
        await socket.send_media(to_bytes(samples[i : i + step]))


async def _collect(socket: Any) -> list[Any]:
    """Every message until the server closes the socket."""
    messages: list[Any] = []
    async with asyncio.timeout(60):
        async for message in socket:
            messages.append(message)
    return messages


async def test_the_sdk_transcribes_speech_with_word_times(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    async with (
        _client(server, api_key=API_KEY) as client,
        client.listen.v1.connect(
            model="nova-3",
            encoding="linear16",
            sample_rate=16000,
            channels=1,
            language="en-US",
            interim_results="true",
            punctuate="true",
            vad_events="TRUE",
            utterance_end_ms=1000,
        ) as socket,
    ):
        receiving = asyncio.create_task(_collect(socket))
        await _stream(socket, sentence.samples)
        await socket.send_keep_alive()
        await socket.send_finalize()
        await socket.send_close_stream()
        messages = await receiving
    kinds = [m.type for m in messages]
    assert kinds[0] == "SpeechStarted"
    assert 0.2 <= messages[0].timestamp <= sentence.start_s + 0.1
    finals = [
        m for m in messages if m.type == "Results" and m.is_final and m.channel.alternatives[0].transcript
    ]
    assert len(finals) == 1
    final = finals[0]
    assert final.speech_final is True and final.from_finalize is False
    alternative = final.channel.alternatives[0]
    spoken = {w.word for w in alternative.words}
    assert set(sentence.content_words) <= spoken, alternative.transcript
    assert alternative.transcript[0].isupper() and alternative.transcript.endswith(".")
    for word in alternative.words:
        assert sentence.start_s - 0.4 <= word.start <= word.end <= sentence.end_s + 0.4, word
        assert 0.0 < word.confidence <= 1.0
    starts = [w.start for w in alternative.words]
    assert starts == sorted(starts)
    assert final.metadata.model_info.name == "tiny.en"
    assert "UtteranceEnd" in kinds
    # Finalize found nothing open: its (empty) result says so
    assert any(m.type == "Results" and m.from_finalize for m in messages)
    assert kinds[-1] == "Metadata"
    assert messages[-1].duration == pytest.approx(sentence.samples.size / 16000, abs=0.05)


async def test_a_temporary_token_opens_one_connection_only(make_server: ServerFactory) -> None:
    server = await make_server()
    async with _client(server, api_key=API_KEY) as client:
        granted = await client.auth.v1.tokens.grant(ttl_seconds=30)
    assert 29 <= (granted.expires_in or 0) <= 30
    async with _client(server, access_token=granted.access_token) as temporary:
        async with temporary.listen.v1.connect(
            model="nova-3", encoding="linear16", sample_rate=8000
        ) as socket:
            receiving = asyncio.create_task(_collect(socket))
            await socket.send_media(bytes(1600))
            await socket.send_close_stream()
            messages = await receiving
        assert [m.type for m in messages] == ["Metadata"]
        with pytest.raises(ApiError) as refused:
            async with temporary.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=8000):
                pass
    assert refused.value.status_code == 401


async def test_wrong_credentials_are_refused_before_the_upgrade(make_server: ServerFactory) -> None:
    server = await make_server()
    async with _client(server, api_key="not-a-key") as client:
        with pytest.raises(ApiError) as refused:
            async with client.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000):
                pass
        assert refused.value.status_code == 401
        with pytest.raises(ApiError) as bad_grant:
            await client.auth.v1.tokens.grant()
        assert bad_grant.value.status_code == 401
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{http_base(server)}/v1/auth/grant",
            headers={"Authorization": f"Token {API_KEY}"},
            json={"ttl_seconds": 99999},
        ) as response:
            assert response.status == 400
            body = await response.json()
            assert body["err_code"] == "Bad Request" and "ttl_seconds" in body["err_msg"]  # Deepgram's word


async def _raw(server: TestServer, query: str, protocols: tuple[str, ...] = ("token", API_KEY)) -> Any:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(f"{ws_base(server)}/v1/listen?{query}", protocols=protocols)
    return session, ws


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict[str, Any]], str]:
    """The JSON frames, and the close frame's reason."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                frames.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                return frames, str(msg.extra)
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return frames, ""


async def test_bad_input_gets_deepgram_shaped_errors(make_server: ServerFactory) -> None:
    server = await make_server()
    # an encoding this server does not decode, a sample rate outside 8-48 kHz: 400 before the upgrade
    for query, says in (
        ("encoding=amr-nb&sample_rate=8000", "encoding amr-nb"),
        ("encoding=linear16&sample_rate=4000", "sample_rate"),
    ):
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{ws_base(server)}/v1/listen?{query}", protocols=("token", API_KEY))
        assert refused.value.status == 400 and refused.value.headers is not None
        assert says in refused.value.headers["dg-error"]
    # unknown and malformed messages are answered with Error and the stream goes on; an oversized audio
    # message closes with 1009 after the accepted audio is finalized
    session, ws = await _raw(server, "encoding=linear16&sample_rate=16000")
    assert ws.protocol == "token"  # the browser credential's subprotocol is answered
    await ws.send_str('{"type": "Configure", "features": {}}')
    await ws.send_str("not json")
    await ws.send_bytes(bytes(3200))
    await ws.send_bytes(bytes(40000))
    frames, reason = await _until_closed(ws)
    errors = [f for f in frames if f["type"] == "Error"]
    assert "Configure" in errors[0]["description"] and "JSON" in errors[1]["description"]
    assert ws.close_code == 1009 and "frame_too_large" in reason
    assert frames[-1]["type"] == "Metadata"
    await session.close()


async def test_without_endpointing_finalize_ends_the_utterance(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    async with (
        _client(server, api_key=API_KEY) as client,
        client.listen.v1.connect(
            model="nova-3", encoding="linear16", sample_rate=16000, endpointing="false", punctuate="false"
        ) as socket,
    ):
        receiving = asyncio.create_task(_collect(socket))
        await _stream(socket, sentence.samples)
        await socket.send_finalize()
        await socket.send_close_stream()
        messages = await receiving
    finals = [m for m in messages if m.type == "Results" and m.is_final]
    # the silence after the sentence did not end it; the Finalize did
    assert len(finals) == 1 and finals[0].from_finalize is True and finals[0].speech_final is False
    alternative = finals[0].channel.alternatives[0]
    assert alternative.transcript == alternative.transcript.lower() and "," not in alternative.transcript
    assert set(sentence.content_words) <= {w.punctuated_word for w in alternative.words}
