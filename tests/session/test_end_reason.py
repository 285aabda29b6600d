"""What ended an utterance travels with its final (``end_reason``, issue 21 item 2): the segmenter's end
(silence, a split at the maximum length), the client's commit or Finalize, the end of the stream."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from fakes import FakeAsr
from faults.streams import utterance
from support import API_KEY, ServerFactory, base_url, make_settings

from session.doubles import ScriptedVad, Sink, services
from streamer.client import StreamerClient
from streamer.protocol import SessionConfig
from streamer.session.outbox import Outbox
from streamer.session.runtime import StreamSession

FRAME_8K = np.zeros(160, dtype="<i2").tobytes()  # 20 ms at 8 kHz: one scripted VAD window per push
SPEECH = 20  # windows
SILENCE = 60  # windows: more than the end-of-utterance silence


async def _finals(script: list[float], end: str, **settings: float) -> list[str | None]:
    """Feed ``script`` (one VAD score per push), end as ``end`` says; each final's end reason."""
    vad = ScriptedVad(script=script)
    svc_settings = make_settings(batching=False, **settings)
    async with services(asr=FakeAsr(text="hello there."), vad=vad, settings=svc_settings) as svc:
        session = StreamSession("sess_end", "key", SessionConfig(sample_rate=8000, language="en"), svc)
        sink = Sink()
        outbox = Outbox(sink, maxsize=256)
        writer = asyncio.create_task(outbox.run())
        session.attach(outbox)
        try:
            while vad.calls < len(script):
                await session.push_audio(FRAME_8K)
            async with asyncio.timeout(10):
                if end == "commit":
                    await session.commit()
                    await session.drain()
                elif end == "finalize":
                    await session.commit("finalize")
                    await session.drain()
                elif end == "server":
                    await session.drain("drain")
                else:
                    await session.drain()
                await outbox.finish()
            await asyncio.wait_for(writer, 10)
        finally:
            writer.cancel()
            await session.abort()
    finals = [json.loads(t) for t in sink.sent]
    return [m.get("end_reason") for m in finals if m["type"] == "transcript.final"]


async def test_an_utterance_ended_by_silence_says_silence() -> None:
    assert await _finals([1.0] * SPEECH + [0.0] * SILENCE, "close") == ["silence"]


async def test_a_split_at_the_maximum_length_says_max_length_and_the_real_end_silence() -> None:
    # 0.5 s at most: 60 windows of speech (1.9 s at 32 ms) are split before their silence ends them
    reasons = await _finals([1.0] * 60 + [0.0] * SILENCE, "close", max_utterance_s=0.5)
    assert len(reasons) >= 2, reasons
    assert set(reasons[:-1]) == {"max_length"} and reasons[-1] == "silence"


async def test_a_commit_and_a_finalize_say_commit() -> None:
    assert await _finals([1.0] * SPEECH, "commit") == ["commit"]
    assert await _finals([1.0] * SPEECH, "finalize") == ["commit"]


async def test_the_end_of_the_stream_says_who_ended_it() -> None:
    assert await _finals([1.0] * SPEECH, "close") == ["close"]
    assert await _finals([1.0] * SPEECH, "server") == ["drain"]


async def test_a_v1_client_closing_inside_speech_gets_a_final_that_says_close(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    pcm = utterance(tail_s=0.0)  # the stream ends inside the utterance: no pause ends it first
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        async with stream:
            for i in range(0, len(pcm), 3200):
                await stream.ws.send_bytes(pcm[i : i + 3200])
            await stream.close_session()
            async with asyncio.timeout(30):
                events = [e async for e in stream]
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert finals and finals[-1]["text"], events
    assert finals[-1]["end_reason"] == "close"
