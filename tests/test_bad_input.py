"""Bad input gets the contract's answer, and a concurrent well-behaved session is unharmed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from support import API_KEY, base_url, load_transcripts, read_pcm16, silence, to_bytes, wer

from streamer.client import Stream, StreamerClient

pytestmark = pytest.mark.slow


async def _next_of(stream: Stream, kind: str, timeout: float = 10) -> dict[str, Any]:
    while True:
        event = await stream.receive(timeout=timeout)
        assert event is not None, f"socket closed while waiting for {kind}"
        if event["type"] == kind:
            return event


async def _good_session(server: TestServer) -> list[dict[str, Any]]:
    speech = read_pcm16("en_utt2.wav")
    pcm = to_bytes(silence(0.3)) + to_bytes(speech) + to_bytes(silence(1.0))
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        async with stream:
            sender = asyncio.create_task(stream.send_pcm(pcm, realtime=True))
            events = [e async for e in stream]
            await sender
    return events


async def _abuse(server: TestServer) -> None:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({})
        async with stream:
            await stream.ws.send_bytes(b"\x00" * 3201)  # odd length
            err = await _next_of(stream, "error")
            assert err["code"] == "invalid_audio" and err["retryable"] is False

            await stream.ws.send_str("{not json")
            assert (await _next_of(stream, "error"))["code"] == "bad_request"

            await stream.send_json({"type": "launch.rockets"})
            assert (await _next_of(stream, "error"))["code"] == "unknown_message_type"

            await stream.send_json({"type": "session.update", "config": {"colour": "blue"}})
            assert (await _next_of(stream, "error"))["code"] == "invalid_config"

            await stream.ws.send_str("[1, 2, 3]")
            assert (await _next_of(stream, "error"))["code"] in ("bad_request", "unknown_message_type")

            # still alive after all that
            await stream.send_json({"type": "ping"})
            await _next_of(stream, "pong")

            await stream.ws.send_bytes(b"\x00" * (16000 * 2 * 2))  # 2 s in one frame: over the 1 s limit
            err = await _next_of(stream, "error")
            assert err["code"] == "frame_too_large"
            closed = await _next_of(stream, "session.closed")
            assert closed["reason"] == "frame_too_large"
            assert await stream.receive(timeout=5) is None
            assert stream.close_code == 1009


async def test_bad_input_does_not_harm_other_sessions(server: TestServer) -> None:
    good = asyncio.create_task(_good_session(server))
    await asyncio.wait_for(_abuse(server), 30)
    events = await asyncio.wait_for(good, 60)
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert len(finals) == 1
    assert wer(load_transcripts()["en_utt2.wav"]["text"], finals[0]["text"]) <= 0.2
    assert not [e for e in events if e["type"] == "error"]


async def test_server_answers_after_abuse(server: TestServer) -> None:
    await asyncio.wait_for(_abuse(server), 30)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({})
        async with stream:
            await stream.send_json({"type": "ping", "id": 7})
            pong = await _next_of(stream, "pong")
            assert pong["id"] == 7
