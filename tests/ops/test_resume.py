"""Resume: a connection dropped mid-stream, a new token for the same session, exactly-once finals."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestServer
from support import API_KEY, base_url, load_transcripts, read_pcm16, silence, to_bytes, wer

from streamer.client import ClientError, Stream, StreamerClient

pytestmark = pytest.mark.slow

NAMES = ["en_utt1.wav", "en_utt2.wav", "en_utt3.wav"]


async def _send(stream: Stream, pcm: bytes) -> None:
    step = 3200
    for i in range(0, len(pcm), step):
        await stream.ws.send_bytes(pcm[i : i + step])
        await asyncio.sleep(0.02)


async def _drain_until_final_count(stream: Stream, count: int) -> None:
    while sum(1 for _, e in stream.events if e["type"] == "transcript.final") < count:
        event = await stream.receive(timeout=20)
        assert event is not None


async def test_resume_delivers_every_final_exactly_once(server: TestServer) -> None:
    texts = load_transcripts()
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        first = await client.connect({"language": "en"})
        # utterance 1 completes and its final is seen
        await _send(first, to_bytes(silence(0.3)) + to_bytes(read_pcm16(NAMES[0])) + to_bytes(silence(0.8)))
        await _drain_until_final_count(first, 1)
        # utterance 2 is spoken, then the connection drops before its end is even detected
        await _send(first, to_bytes(read_pcm16(NAMES[1])))
        await first.ws.close()
        assert first.last_seq == 1

        second = await client.resume(first)
        assert second.created is not None and second.created["resumed"] is True
        await _send(second, to_bytes(silence(0.8)) + to_bytes(read_pcm16(NAMES[2])) + to_bytes(silence(0.8)))
        await second.close_session()
        rest = [e async for e in second]
        await second.ws.close()

    finals = [e for _, e in first.events if e["type"] == "transcript.final"]
    finals += [e for e in rest if e["type"] == "transcript.final"]
    assert [f["seq"] for f in finals] == [1, 2, 3]
    for final, name in zip(finals, NAMES, strict=True):
        assert wer(texts[name]["text"], final["text"]) <= 0.2, final["text"]
    # times keep counting from the session's first sample across the reconnect
    assert finals[0]["audio_end_ms"] < finals[1]["audio_start_ms"] < finals[2]["audio_start_ms"]
    assert rest[-1]["type"] == "session.closed" and rest[-1]["finals"] == 3


async def test_resume_refused_for_other_keys_and_unknown_sessions(server: TestServer) -> None:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({})
        await stream.close_session()
        _ = [e async for e in stream]
        await stream.ws.close()
        with pytest.raises(ClientError) as e:  # closed with session.close: not resumable
            await client.resume(stream)
        assert e.value.status == 404
    async with StreamerClient(base_url(server), api_key="some-other-key") as other:
        with pytest.raises(ClientError) as e:
            await other.resume(stream)
        assert e.value.status == 401
