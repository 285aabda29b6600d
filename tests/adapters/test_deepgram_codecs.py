"""Deepgram live (``/v1/listen``) with the audio clients really send: every container and encoding Deepgram
accepts, encoded at test time by FFmpeg (PyAV), streamed in small chunks through the official deepgram-sdk
to a real server with the real tiny.en model; stereo with ``multichannel=true``; bad streams closed."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from encoders import alaw, encode, m4a, mulaw
from support import API_KEY, read_pcm16, resample_pcm

from streamer_bench.wer import words as normalized_words

from .conftest import Sentence, http_base, ws_base

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]

ServerFactory = Callable[..., Awaitable[TestServer]]
REALTIME = 4.0  # how much faster than real time the tests stream: real-ish, and the suite stays fast


@contextlib.asynccontextmanager
async def _client(server: TestServer) -> AsyncIterator[AsyncDeepgramClient]:
    base, ws = http_base(server), ws_base(server)
    environment = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    async with httpx.AsyncClient() as http:
        yield AsyncDeepgramClient(environment=environment, httpx_client=http, api_key=API_KEY)


async def _collect(socket: Any) -> list[Any]:
    messages: list[Any] = []
    async with asyncio.timeout(60):
        async for message in socket:
            messages.append(message)
    return messages


async def _transcribe(
    server: TestServer, data: bytes, chunks: int, audio_s: float, **query: Any
) -> list[Any]:
    """``data`` sent in about ``chunks`` messages at 4x real time (``audio_s`` of audio in all), then
    CloseStream; every message the server sent."""
    step = max(1, -(-len(data) // chunks))
    gap_s = audio_s / chunks / REALTIME  # pacing a sender, not waiting for anything
    async with _client(server) as client, client.listen.v1.connect(model="nova-3", **query) as socket:
        receiving = asyncio.create_task(_collect(socket))
        for i in range(0, len(data), step):
            await socket.send_media(data[i : i + step])
            await asyncio.sleep(gap_s)
        await socket.send_close_stream()
        return await receiving


def _finals(messages: list[Any], channel: int = 0) -> str:
    return " ".join(
        m.channel.alternatives[0].transcript
        for m in messages
        if m.type == "Results" and m.is_final and m.channel_index[0] == channel
    )


@pytest.mark.parametrize(
    ("container", "query", "chunk_s"),
    [
        ("wav", {}, 0.1),
        ("ogg", {}, 0.1),
        ("ogg", {"encoding": "opus"}, 0.1),
        ("ogg", {"encoding": "ogg-opus"}, 0.1),
        ("webm", {}, 0.25),  # MediaRecorder's timeslice
        ("webm", {"encoding": "opus"}, 0.25),
        ("flac", {}, 0.1),
        ("flac", {"encoding": "flac"}, 0.1),
        ("mp3", {}, 0.1),
        ("aac", {}, 0.1),  # ADTS
    ],
)
async def test_containerized_audio_is_transcribed_as_it_streams(
    make_server: ServerFactory, sentence: Sentence, container: str, query: dict[str, str], chunk_s: float
) -> None:
    server = await make_server()
    data = encode(sentence.samples, 16000, container)
    chunks = round(sentence.samples.size / 16000 / chunk_s)
    audio_s = sentence.samples.size / 16000
    messages = await _transcribe(server, data, chunks, audio_s, punctuate="false", **query)
    assert set(sentence.content_words) <= set(normalized_words(_finals(messages))), container
    assert messages[-1].type == "Metadata"
    assert messages[-1].duration == pytest.approx(sentence.samples.size / 16000, abs=0.1)


@pytest.mark.parametrize(("encoding", "g711"), [("mulaw", mulaw), ("alaw", alaw)])
async def test_telephony_g711_at_8_khz(
    make_server: ServerFactory, sentence: Sentence, encoding: str, g711: Callable[[np.ndarray], bytes]
) -> None:
    server = await make_server()
    data = g711(resample_pcm(sentence.samples, 8000))
    chunks = round(len(data) / 160)  # 20 ms, as Twilio's media streams send it
    messages = await _transcribe(server, data, chunks, len(data) / 8000, encoding=encoding, sample_rate=8000)
    assert set(sentence.content_words) <= set(normalized_words(_finals(messages)))


async def test_linear32_float_pcm(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await make_server()
    data = (sentence.samples.astype("<f4") / 32768).tobytes()
    chunks = round(sentence.samples.size / 1600)
    messages = await _transcribe(
        server, data, chunks, sentence.samples.size / 16000, encoding="linear32", sample_rate=16000
    )
    assert set(sentence.content_words) <= set(normalized_words(_finals(messages)))


async def test_live_m4a_is_refused_with_where_to_send_it(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{ws_base(server)}/v1/listen", protocols=("token", API_KEY))
        await ws.send_bytes(m4a(sentence.samples, 16000, faststart=True))
        async with asyncio.timeout(30):
            while (msg := await ws.receive()).type != aiohttp.WSMsgType.CLOSE:
                pass
    assert ws.close_code == 1008 and "POST the file to /v1/listen" in str(msg.extra)


async def test_stereo_multichannel_transcribes_each_channel(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    other = read_pcm16("en_utt1.wav")
    n = max(sentence.samples.size, other.size)
    stereo = np.zeros((n, 2), dtype=np.int16)
    stereo[: sentence.samples.size, 0] = sentence.samples
    stereo[: other.size, 1] = other
    raw = stereo.astype("<i2").tobytes()
    seconds = n / 16000
    messages = await _transcribe(
        server,
        raw,
        round(n / 1600),
        seconds,
        encoding="linear16",
        sample_rate=16000,
        channels=2,
        multichannel="true",
    )
    left, right = normalized_words(_finals(messages, 0)), normalized_words(_finals(messages, 1))
    assert set(sentence.content_words) <= set(left)
    assert {"children", "playing", "football", "park"} <= set(right)
    assert not {"children", "football"} & set(left) and not {"voice"} & set(right)
    assert {tuple(m.channel_index) for m in messages if m.type == "Results"} == {(0, 2), (1, 2)}
    assert messages[-1].type == "Metadata" and messages[-1].channels == 2
    # the same stereo in a container; without multichannel it is mixed down to one channel
    flac = encode(stereo, 16000, "flac")
    messages = await _transcribe(server, flac, 20, seconds, channels=2, multichannel="true")
    assert {"football", "park"} <= set(normalized_words(_finals(messages, 1)))
    # without channels=, the container's header says how many (as Deepgram reads containers)
    messages = await _transcribe(server, encode(stereo, 16000, "webm"), 20, seconds, multichannel="true")
    assert set(sentence.content_words) <= set(normalized_words(_finals(messages, 0)))
    assert {"football", "park"} <= set(normalized_words(_finals(messages, 1)))
    assert {tuple(m.channel_index) for m in messages if m.type == "Results"} == {(0, 2), (1, 2)}
    assert messages[-1].channels == 2
    mixed = await _transcribe(server, flac, 20, seconds)
    assert {tuple(m.channel_index) for m in mixed if m.type == "Results"} == {(0, 1)}
    # raw stereo without multichannel: one mixed channel too
    mixed = await _transcribe(server, raw, 20, seconds, encoding="linear16", sample_rate=16000, channels=2)
    assert {tuple(m.channel_index) for m in mixed if m.type == "Results"} == {(0, 1)}
    assert mixed[-1].channels == 1 and mixed[-1].duration == pytest.approx(seconds, abs=0.05)
