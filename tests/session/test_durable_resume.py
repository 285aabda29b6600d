"""Durable sessions (STREAMER_REDIS_URL): two servers on one Redis, the real model.

A session dropped on one instance resumes on the other; a session whose instance died (its heartbeat
lapsed, nothing parked) is claimed from its written-through state, and the audio the client sends again
from before the transcribed-up-to point is skipped; a session still held by a live instance is not taken.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from faults.streams import CHUNK, events_until_closed, next_event, of_type
from support import (
    API_KEY,
    ServerFactory,
    base_url,
    load_transcripts,
    make_settings,
    read_pcm16,
    silence,
    to_bytes,
    wer,
)

from streamer.client import SessionInfo, Stream, StreamerClient
from streamer.edge.handshake import REGISTRY
from streamer.protocol import SessionConfig, TranscriptFinal
from streamer.session import durable
from streamer.session.durable import DurableSessions

pytestmark = [pytest.mark.slow, pytest.mark.redis]

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _sentence(name: str) -> bytes:
    return to_bytes(silence(0.3)) + to_bytes(read_pcm16(name)) + to_bytes(silence(1.0))


def _text(name: str) -> str:
    return str(load_transcripts()[name]["text"])


async def _speak(stream: Stream, pcm: bytes, speed: float = 10.0) -> None:
    for i in range(0, len(pcm), CHUNK):
        await stream.send_audio(pcm[i : i + CHUNK])
        await asyncio.sleep(0.1 / speed)


async def _pair(make_server: ServerFactory, redis_url: str) -> tuple[TestServer, TestServer]:
    settings = make_settings(redis_url=redis_url)
    return await make_server(settings), await make_server(settings)


async def test_a_dropped_session_resumes_on_another_instance(
    make_server: ServerFactory, redis_url: str
) -> None:
    a, b = await _pair(make_server, redis_url)
    utt2 = to_bytes(read_pcm16("en_utt2.wav"))
    half = len(utt2) // 2 // CHUNK * CHUNK
    async with (
        StreamerClient(base_url(a), api_key=API_KEY) as on_a,
        StreamerClient(base_url(b), api_key=API_KEY) as on_b,
    ):
        first = await on_a.connect({"language": "en"})
        await _speak(first, _sentence("en_utt1.wav"))
        await next_event(first, "transcript.final", timeout=30)
        await _speak(first, utt2[:half])  # mid-sentence
        await first.ws.close()  # the connection drops: instance A parks the session in Redis

        second = await on_b.resume(first)
        assert second.created is not None and second.created["resumed"] is True
        assert first.info.session_id not in a.app[REGISTRY].sessions
        assert first.info.session_id in b.app[REGISTRY].sessions
        await _speak(second, utt2[half:] + to_bytes(silence(1.0)))
        await second.close_session()
        rest = await events_until_closed(second, timeout=60)

    finals = of_type([e for _, e in first.events], "transcript.final") + of_type(rest, "transcript.final")
    # the half sentence was finalized at the drop (on A, replayed by B); the rest is B's: each once
    assert [f["seq"] for f in finals] == [1, 2, 3], finals
    assert wer(_text("en_utt1.wav"), finals[0]["text"]) <= 0.25
    assert wer(_text("en_utt2.wav"), f"{finals[1]['text']} {finals[2]['text']}") <= 0.35, finals
    starts = [f["audio_start_ms"] for f in finals]
    assert starts == sorted(starts) and finals[1]["audio_end_ms"] <= finals[2]["audio_start_ms"] + 100
    assert rest[-1]["type"] == "session.closed" and rest[-1]["finals"] == 3
    # closed for good: no instance resumes it any more
    async with aiohttp.ClientSession() as http:
        for server in (a, b):
            url = f"{base_url(server)}/v1/sessions/{first.info.session_id}/resume"
            async with http.post(url, headers=AUTH) as r:
                assert r.status == 404


async def _dead_instance_session(
    server: TestServer, sentence_ms: tuple[int, int]
) -> tuple[str, TranscriptFinal]:
    """A session whose instance wrote one final through and then died: it never beats, never parks."""
    registry = server.app[REGISTRY]
    dead = DurableSessions(registry.services, instance_id="dead-instance")
    session_id = registry.services.tokens.new_session_id()
    session = registry.open(session_id, stream_key(server), SessionConfig(language="en"))
    journal = dead.journal(session)
    final = TranscriptFinal(
        segment_id=1,
        seq=1,
        text="First sentence.",
        language="en",
        audio_start_ms=sentence_ms[0],
        audio_end_ms=sentence_ms[1],
    )
    await journal.record(final)
    return session_id, final


async def test_a_crashed_instances_session_is_claimed_and_the_resent_audio_transcribed_once(
    make_server: ServerFactory, redis_url: str
) -> None:
    server = await make_server(make_settings(redis_url=redis_url))
    session_id, final = await _dead_instance_session(server, (300, 2000))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/sessions/{session_id}/resume", headers=AUTH) as r:
            assert r.status == 201, await r.text()
            answer = await r.json()
        assert (answer["last_seq"], answer["transcribed_until_ms"]) == (1, 2000)
        # the client's buffer starts 500 ms before that point (it trimmed at a final it saw earlier)
        url = f"{base_url(server)}/v1/stream?token={answer['token']}&last_seq=0&audio_from_ms=1500"
        ws = await http.ws_connect(url.replace("http", "ws", 1))
        stream = Stream(ws, _info(answer))
        try:
            created = await stream.receive(timeout=10)
            assert created is not None and created["resumed"] is True
            replayed = await stream.receive(timeout=10)
            assert replayed == final.model_dump(exclude_none=True)  # from the written-through history
            resent = to_bytes(silence(0.5)) + to_bytes(read_pcm16("en_utt3.wav")) + to_bytes(silence(1.0))
            for i in range(0, len(resent), CHUNK):
                await ws.send_bytes(resent[i : i + CHUNK])
            await stream.close_session()
            events = await events_until_closed(stream, timeout=60)
        finally:
            await ws.close()
    finals = of_type(events, "transcript.final")
    assert [f["seq"] for f in finals] == [2], events
    assert wer(_text("en_utt3.wav"), finals[0]["text"]) <= 0.25
    # the 500 ms before 2000 were skipped: the clock goes on from 2000, the speech starts after it
    # (without the skip the speech would start about 2,300: 2,500 + its 100 ms lead - 300 ms pre-roll)
    assert 2000 <= finals[0]["audio_start_ms"] <= 2200, finals[0]
    assert finals[0]["segment_id"] == 2
    assert events[-1]["type"] == "session.closed" and events[-1]["finals"] == 2


async def test_a_session_held_by_a_live_instance_is_not_taken(
    make_server: ServerFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "CLAIM_WAIT_S", 0.5)
    a, b = await _pair(make_server, redis_url)
    async with StreamerClient(base_url(a), api_key=API_KEY) as on_a, aiohttp.ClientSession() as http:
        stream = await on_a.connect({"language": "en"})
        session_id = stream.info.session_id
        deadline = time.monotonic() + 5
        durable_b = b.app[REGISTRY].durable
        assert durable_b is not None
        while await durable_b.load(session_id, stream_key(b)) is None:
            assert time.monotonic() < deadline, "the new session was never written through"
            await asyncio.sleep(0.05)
        async with http.post(f"{base_url(b)}/v1/sessions/{session_id}/resume", headers=AUTH) as r:
            assert r.status == 201
            token = (await r.json())["token"]
        async with http.get(f"{base_url(b)}/v1/stream?token={token}&last_seq=0") as r:
            assert r.status == 409
            assert (await r.json())["error"]["code"] == "session_busy"
        async with http.post(f"{base_url(b)}/v1/sessions/{session_id}/resume", headers=AUTH) as r:
            token = (await r.json())["token"]
        async with http.get(f"{base_url(b)}/v1/stream?token={token}&last_seq=0&audio_from_ms=-5") as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "bad_request"
        # the session goes on where it is
        await _speak(stream, _sentence("en_utt1.wav"))
        final = await next_event(stream, "transcript.final", timeout=30)
        assert final["seq"] == 1
        await stream.ws.close()


def _info(answer: dict[str, Any]) -> SessionInfo:
    keys = ("session_id", "token", "ws_url", "config", "limits", "expires_at")
    return SessionInfo(**{k: answer[k] for k in keys})


def stream_key(server: TestServer) -> str:
    record = server.app[REGISTRY].services.keys.verify_static(API_KEY)
    assert record is not None
    return record.key_id
