"""Audio framed the way real clients frame it, streamed in real time through a real server (issue 19).

Each client behaviour the issue found broken streams a real sentence (tiny.en, Silero) under the
server's default limits: it must get the whole transcript and no ``error``. An odd byte count is still
refused, and a flood of tiny frames is still stopped by the message-rate limit.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from support import (
    API_KEY,
    ServerFactory,
    base_url,
    load_transcripts,
    make_settings,
    read_pcm16,
    resample_pcm,
    silence,
    to_bytes,
    wer,
)

from streamer.client import Stream, StreamerClient
from streamer.client_audio import mulaw_encode
from streamer.config import Settings

pytestmark = pytest.mark.slow

SENTENCE = "en_utt1.wav"
TIMEOUT_S = 60


def defaults() -> Settings:
    """The test settings, with the server's own default message rate and audio pacing."""
    fields = Settings.model_fields
    return make_settings(
        **{
            name: fields[name].default
            for name in ("max_messages_per_s", "message_burst", "max_realtime_factor", "realtime_burst_s")
        }
    )


def sentence(rate: int, name: str = SENTENCE) -> bytes:
    """The sentence with a little silence before and after, as PCM16 at ``rate``."""
    samples = np.concatenate([silence(0.3), read_pcm16(name), silence(1.0)])
    return to_bytes(resample_pcm(samples, rate))


def fixed(size: int) -> Iterator[int]:
    while True:
        yield size


async def stream_realtime(stream: Stream, audio: bytes, bytes_per_s: int, sizes: Iterable[int]) -> None:
    """Send ``audio`` in frames of ``sizes`` bytes, each when its audio would have been captured."""
    start, sent = time.monotonic(), 0
    for size in sizes:
        if sent >= len(audio):
            break
        frame = audio[sent : sent + size]
        await stream.ws.send_bytes(frame)
        sent += len(frame)
        await asyncio.sleep(max(0.0, start + sent / bytes_per_s - time.monotonic()))


async def transcribe(
    server: TestServer, audio: bytes, config: dict[str, Any], bytes_per_s: int, sizes: Iterable[int]
) -> list[dict[str, Any]]:
    """Every event (``session.created`` first) of a session that streams ``audio`` in real time and then
    closes."""
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", **config})
        async with stream:
            events = asyncio.create_task(_collect(stream))
            await stream_realtime(stream, audio, bytes_per_s, sizes)
            await stream.close_session()
            assert stream.created is not None
            return [stream.created, *await asyncio.wait_for(events, TIMEOUT_S)]


async def _collect(stream: Stream) -> list[dict[str, Any]]:
    return [e async for e in stream]


def assert_whole_sentence(events: list[dict[str, Any]], name: str = SENTENCE) -> None:
    assert not [e for e in events if e["type"] == "error"], events
    assert events[-1]["type"] == "session.closed" and events[-1]["reason"] == "client_closed"
    text = " ".join(e["text"] for e in events if e["type"] == "transcript.final")
    assert wer(load_transcripts()[name]["text"], text) <= 0.2, text


@pytest.fixture
async def server(make_server: ServerFactory) -> TestServer:
    return await make_server(defaults())


async def test_10ms_frames_at_16khz(server: TestServer) -> None:
    """WebRTC and native capture callbacks: 100 frames a second."""
    events = await transcribe(server, sentence(16000), {}, 32000, fixed(320))
    assert_whole_sentence(events)


async def test_128_sample_frames_at_48khz(server: TestServer) -> None:
    """An AudioWorklet posting every render quantum: 375 frames a second of 2.67 ms."""
    events = await transcribe(server, sentence(48000), {"sample_rate": 48000}, 96000, fixed(256))
    assert_whole_sentence(events)


async def test_frames_of_random_sizes_and_a_short_last_frame(server: TestServer) -> None:
    """A file read in pieces of any (even) size, down to one sample; its last piece is a few bytes."""
    rng = random.Random(19)
    audio = sentence(16000)
    audio += audio[:6]  # whatever the pieces, the last frame is three samples
    sizes = [2 * rng.randint(1, 2000) for _ in range(len(audio))]
    cut, pieces = 0, []
    for size in sizes:
        if cut + size >= len(audio) - 6:
            break
        pieces.append(size)
        cut += size
    pieces += [len(audio) - 6 - cut, 6]
    assert sum(pieces) == len(audio) and min(pieces[:-1]) >= 2
    events = await transcribe(server, audio, {}, 32000, pieces)
    assert_whole_sentence(events)


async def test_mulaw_at_8khz(server: TestServer) -> None:
    """G.711 μ-law, as telephony sends it: 20 ms frames of 160 bytes. (Another sentence: through μ-law
    tiny.en hears en_utt1's "football in" as "for falling" when it is streamed, though not offline.)"""
    name = "en_utt2.wav"
    pcm = np.frombuffer(sentence(8000, name), dtype="<i2")
    events = await transcribe(
        server, mulaw_encode(pcm), {"sample_rate": 8000, "encoding": "mulaw"}, 8000, fixed(160)
    )
    assert_whole_sentence(events, name)
    assert events[0]["config"]["encoding"] == "mulaw"
    assert events[0]["limits"]["max_frame_bytes"] == 8000  # 1 s at one byte a sample


async def _next(stream: Stream, kind: str) -> dict[str, Any]:
    while True:
        event = await stream.receive(timeout=TIMEOUT_S)
        assert event is not None, f"closed (code {stream.close_code}) while waiting for {kind}"
        if event["type"] == kind:
            return event


async def test_an_odd_byte_count_is_refused_and_the_session_goes_on(server: TestServer) -> None:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({})
        async with stream:
            await stream.ws.send_bytes(b"\0" * 2)  # one sample: audio
            await stream.ws.send_bytes(b"\0" * 3)
            error = await _next(stream, "error")
            assert error["code"] == "invalid_audio" and "whole number" in error["message"]
            await stream.send_json({"type": "ping", "id": 1})
            assert (await _next(stream, "pong"))["id"] == 1


async def test_encoding_changes_only_before_the_first_audio(server: TestServer) -> None:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({})
        async with stream:
            await stream.update(encoding="alaw", sample_rate=8000)
            await stream.ws.send_bytes(b"\xd5" * 161)  # an odd count is whole A-law samples
            await stream.update(encoding="pcm16")
            error = await _next(stream, "error")
            assert error["code"] == "invalid_config" and "before the first audio" in error["message"]
            await stream.send_json({"type": "ping", "id": 2})
            assert (await _next(stream, "pong"))["id"] == 2


async def test_a_flood_of_tiny_frames_is_stopped(server: TestServer) -> None:
    """Far above any capture stack: one-sample frames as fast as the client can send them."""
    settings = defaults()
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({})
        async with stream:
            closed = asyncio.create_task(_next(stream, "session.closed"))
            limit = settings.message_burst + 10 * settings.max_messages_per_s  # sent within 10 s: stopped
            sent = 0
            while not closed.done() and sent < limit:
                try:
                    await stream.ws.send_bytes(b"\0\0")
                except ConnectionError:
                    break  # closed under us: the close event says why
                sent += 1
                if sent % 64 == 0:
                    await asyncio.sleep(0)  # let the reader see the close
            assert (await asyncio.wait_for(closed, TIMEOUT_S))["reason"] == "message_rate_exceeded"
            assert await stream.receive(timeout=TIMEOUT_S) is None
            assert stream.close_code == 1008
