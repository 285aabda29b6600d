"""Containerized audio on protocol v1 (issue 19): a session whose ``encoding`` names a container streams
the container's bytes as a MediaRecorder sends them, and the server decodes them as they arrive.

Real speech (en_utt1) is encoded at test time as each client's recorder writes it (WebM/Opus as
MediaRecorder does: a live stream, unknown sizes, 250 ms clusters), cut into 250 ms pieces and streamed
at twice real time through a real server (tiny.en, Silero): the whole sentence must come back, with no
``error``. A container other than the declared one, garbage, and a bomb (minutes of Opus silence in a few
KiB) end the session with an ``error`` that says why.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from encoders import encode
from support import (
    API_KEY,
    ServerFactory,
    base_url,
    load_transcripts,
    make_settings,
    read_pcm16,
    silence,
    wer,
)

from streamer.client import Stream, StreamerClient
from streamer.config import Settings

pytestmark = pytest.mark.slow

SENTENCE = "en_utt1.wav"
TIMEOUT_S = 60
SPEED = 2.0  # times real time: under the server's default pacing (3x with a 10 s burst)


def defaults() -> Settings:
    """The test settings with the server's own default message rate and audio pacing."""
    fields = Settings.model_fields
    return make_settings(
        **{
            name: fields[name].default
            for name in ("max_messages_per_s", "message_burst", "max_realtime_factor", "realtime_burst_s")
        }
    )


@pytest.fixture
async def server(make_server: ServerFactory) -> TestServer:
    return await make_server(defaults())


def sentence() -> np.ndarray:
    """The sentence with a little silence before and after, 16 kHz PCM16 samples."""
    return np.concatenate([silence(0.3), read_pcm16(SENTENCE), silence(1.0)])


async def _collect(stream: Stream) -> list[dict[str, Any]]:
    return [e async for e in stream]


async def stream_container(
    server: TestServer, data: bytes, duration_s: float, config: dict[str, Any], speed: float = SPEED
) -> tuple[list[dict[str, Any]], int | None]:
    """Every event of a session that streams ``data`` in 250 ms pieces then closes; the close code."""
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", **config})
        async with stream:
            events = asyncio.create_task(_collect(stream))
            with contextlib.suppress(ConnectionError):  # the server closed first: its events say why
                await stream.send_container(data, duration_s, speed=speed)
            assert stream.created is not None
            collected = await asyncio.wait_for(events, TIMEOUT_S)
            assert await stream.receive(timeout=TIMEOUT_S) is None  # then the close frame
            return [stream.created, *collected], stream.close_code


def closing_error(events: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [e for e in events if e["type"] == "error"]
    assert errors, events
    assert events[-1]["type"] == "session.closed" and events[-1]["reason"] == errors[-1]["code"]
    return errors[-1]


@pytest.mark.parametrize("container", ["webm", "ogg", "wav", "mp3", "flac"])
async def test_a_container_streamed_in_pieces_is_transcribed(server: TestServer, container: str) -> None:
    samples = sentence()
    events, code = await stream_container(
        server, encode(samples, 16000, container), len(samples) / 16000, {"encoding": container}
    )
    assert not [e for e in events if e["type"] == "error"], events
    assert events[0]["config"]["encoding"] == container
    assert events[0]["limits"]["max_frame_bytes"] == 96_000  # 1 s of 48 kHz PCM16, whatever the rate
    assert events[-1]["type"] == "session.closed" and events[-1]["reason"] == "client_closed"
    assert code == 1000
    text = " ".join(e["text"] for e in events if e["type"] == "transcript.final")
    assert wer(load_transcripts()[SENTENCE]["text"], text) <= 0.2, text
    # the decoded audio is what the session counts: its length, not the bytes'
    assert abs(events[-1]["audio_ms"] - len(samples) / 16) < 300, events[-1]


async def test_any_container_is_detected(server: TestServer) -> None:
    samples = sentence()
    events, _ = await stream_container(
        server, encode(samples, 16000, "ogg"), len(samples) / 16000, {"encoding": "container"}
    )
    assert not [e for e in events if e["type"] == "error"], events
    text = " ".join(e["text"] for e in events if e["type"] == "transcript.final")
    assert wer(load_transcripts()[SENTENCE]["text"], text) <= 0.2, text


async def test_another_container_than_declared_is_refused(server: TestServer) -> None:
    samples = sentence()
    events, code = await stream_container(
        server, encode(samples, 16000, "ogg"), len(samples) / 16000, {"encoding": "webm"}
    )
    error = closing_error(events)
    assert error["code"] == "invalid_audio" and "ogg, not the declared encoding" in error["message"]
    assert code == 1008


async def test_garbage_is_refused(server: TestServer) -> None:
    garbage = np.random.default_rng(19).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    events, code = await stream_container(server, garbage, 1.0, {"encoding": "container"})
    error = closing_error(events)
    assert error["code"] == "invalid_audio" and "could not be decoded" in error["message"]
    assert code == 1008


async def test_a_bomb_is_paced_not_decoded_at_once(server: TestServer) -> None:
    """Three minutes of Opus silence are a few dozen KiB; sent at once, the server decodes them no faster
    than its pacing allows (the 10 s burst, then 3x real time) and closes the session."""
    bomb = encode(np.zeros(16000 * 180, dtype=np.int16), 16000, "ogg")
    assert len(bomb) < 96_000  # one message
    events, code = await stream_container(server, bomb, 180.0, {"encoding": "ogg"}, speed=0)
    error = closing_error(events)
    assert error["code"] == "audio_rate_exceeded"
    assert code == 1008
    assert events[-1]["audio_ms"] < 30_000, events[-1]


async def test_sample_rate_is_fixed_once_a_container_streams(server: TestServer) -> None:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"encoding": "wav"})
        async with stream:
            await stream.ws.send_bytes(encode(silence(0.5), 16000, "wav"))
            await stream.update(sample_rate=48000)
            while (event := await stream.receive(timeout=TIMEOUT_S)) is not None:
                if event["type"] == "error":
                    break
            assert event is not None and event["code"] == "invalid_config", event
            await stream.send_json({"type": "ping", "id": 3})
            while (event := await stream.receive(timeout=TIMEOUT_S)) is not None and event["type"] != "pong":
                pass
            assert event is not None and event["id"] == 3


async def test_a_message_over_the_byte_bound_is_refused(server: TestServer) -> None:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"encoding": "wav"})
        async with stream:
            header = encode(silence(0.1), 16000, "wav")
            await stream.ws.send_bytes(header + b"\0" * (96_001 - len(header)))
            events = await asyncio.wait_for(_collect(stream), TIMEOUT_S)
            assert closing_error(events)["code"] == "frame_too_large"
            assert await stream.receive(timeout=TIMEOUT_S) is None
            assert stream.close_code == 1009


async def test_commit_passes_on_what_the_bytes_so_far_decode_to(server: TestServer) -> None:
    """A sentence, then input_audio.commit with no silence after it: its final comes from the commit."""
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", "encoding": "flac"})
        async with stream:
            samples = np.concatenate([silence(0.3), read_pcm16(SENTENCE)])
            flac = encode(samples, 16000, "flac")
            await stream.send_container(flac, len(samples) / 16000, speed=SPEED, close=False)
            await stream.commit()
            while (event := await stream.receive(timeout=TIMEOUT_S)) is not None:
                assert event["type"] != "error", event
                if event["type"] == "transcript.final":
                    break
            assert event is not None
            assert wer(load_transcripts()[SENTENCE]["text"], event["text"]) <= 0.2, event


async def test_a_resumed_connection_starts_a_new_container_stream(server: TestServer) -> None:
    """The first connection streams one sentence and drops; the resumed one sends a new Ogg stream (its
    header first, as a restarted MediaRecorder does) with the next: both are transcribed, once."""
    first, second = sentence(), np.concatenate([read_pcm16("en_utt2.wav"), silence(1.0)])
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", "encoding": "ogg"})
        await stream.send_container(encode(first, 16000, "ogg"), len(first) / 16000, speed=SPEED, close=False)
        while (event := await stream.receive(timeout=TIMEOUT_S)) is not None:
            assert event["type"] != "error", event
            if event["type"] == "transcript.final":
                break
        await stream.ws.close()  # a drop: no session.close
        resumed = await client.resume(stream)
        async with resumed:
            assert resumed.created is not None and resumed.created["resumed"] is True
            events = asyncio.create_task(_collect(resumed))
            await resumed.send_container(encode(second, 16000, "ogg"), len(second) / 16000, speed=SPEED)
            later = await asyncio.wait_for(events, TIMEOUT_S)
    assert not [e for e in later if e["type"] == "error"], later
    finals = [e for e in later if e["type"] == "transcript.final"]
    assert [e["seq"] for e in finals] == list(range(2, 2 + len(finals))), finals  # none lost or repeated
    # the new stream's sentence, on the session's clock: after the first connection's audio
    new = [e for e in finals if e["audio_start_ms"] >= len(first) / 16 - 1000]
    assert wer(load_transcripts()["en_utt2.wav"]["text"], " ".join(e["text"] for e in new)) <= 0.2, finals
