"""The turn detector's speculation: a final decoded at a pause is withdrawn the moment speech resumes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from fakes import FakeAsr
from support import make_settings

from session.doubles import ScriptedVad, Sink, services
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.protocol import SessionConfig
from streamer.session.outbox import Outbox
from streamer.session.runtime import StreamSession

FRAME = np.zeros(512, dtype="<i2").tobytes()  # one 32 ms window at 16 kHz
SPEECH, PAUSE = 20, 6  # the default pause is 160 ms (5 windows); the utterance ends at 400 ms


@dataclass
class _StartedAsr(FakeAsr):
    """Says when its first model call has begun."""

    started: threading.Event = field(default_factory=threading.Event)

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        self.started.set()
        return super().transcribe_batch(requests)


def _outcomes(session: StreamSession) -> dict[str, float]:
    counter = session.services.metrics.speculations
    return {o: counter.labels(o)._value.get() for o in ("used", "wasted", "withdrawn")}


async def _settle(condition: object, tries: int = 50) -> None:
    """Let the loop run the cancelled decode's cleanup (no sleeping on the clock)."""
    for _ in range(tries):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0)


async def test_a_speculation_is_withdrawn_from_the_queue_when_speech_resumes() -> None:
    asr = _StartedAsr(text="Hello there.", hang=True)
    vad = ScriptedVad([0.0] + [0.9] * SPEECH + [0.0] * PAUSE + [0.9] * 3)
    async with services(asr=asr, vad=vad, settings=make_settings(batching=True)) as svc:
        # another session's decode holds the model, so this session's speculation waits in the queue
        blocker = asyncio.create_task(
            svc.asr_batcher.submit_final("other", ("transcribe", "en", ""), AsrRequest(np.zeros(1600)))
        )
        assert await asyncio.to_thread(asr.started.wait, 10), "the model thread has taken it"
        config = SessionConfig(language="en", interim_results=False)
        session = StreamSession("sess_spec", "key", config, svc)
        session.attach(Outbox(Sink(), maxsize=64))
        for _ in range(1 + SPEECH + PAUSE):
            await session.push_audio(FRAME)
        await _settle(lambda: svc.asr_batcher.depth[0] == 1)
        assert svc.asr_batcher.depth[0] == 1, "the pause queued a speculative decode"

        await session.push_audio(FRAME)  # speech resumes: that decode can no longer be the final
        await _settle(lambda: svc.asr_batcher.depth[0] == 0)
        assert svc.asr_batcher.depth[0] == 0, "withdrawn before the model ran it"
        assert _outcomes(session) == {"used": 0, "wasted": 0, "withdrawn": 1}

        asr.release()
        await blocker
        await session.abort()


async def test_a_speculation_of_the_whole_utterance_is_its_final() -> None:
    vad = ScriptedVad([0.0] + [0.9] * SPEECH + [0.0] * 40)
    async with services(
        asr=FakeAsr(text="Hello there."), vad=vad, settings=make_settings(batching=True)
    ) as svc:
        config = SessionConfig(language="en", interim_results=False)
        session = StreamSession("sess_used", "key", config, svc)
        sink = Sink()
        outbox = Outbox(sink, maxsize=64)
        writer = asyncio.create_task(outbox.run())
        session.attach(outbox)
        for _ in range(1 + SPEECH + 40):
            await session.push_audio(FRAME)
            await asyncio.sleep(0)
        await session.drain()
        await outbox.finish()
        await writer
    assert sink.types().count("transcript.final") == 1
    assert _outcomes(session) == {"used": 1, "wasted": 0, "withdrawn": 0}
