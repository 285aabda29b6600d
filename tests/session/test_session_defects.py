"""Regression tests for defects a close read found in the session runtime and its connection."""

from __future__ import annotations

import asyncio

import numpy as np
from fakes import FakeAsr
from support import make_settings

from session.doubles import ScriptedVad, Sink, services
from streamer.edge.ws import Connection
from streamer.pipeline.segmenter import Ended, Segmenter
from streamer.protocol import Pong, SessionConfig
from streamer.session.outbox import Outbox
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

SPEECH_WINDOWS = 20
FRAME_8K = np.zeros(160, dtype="<i2").tobytes()  # 20 ms at 8 kHz


def _silence_to_end(session: StreamSession) -> int:
    """How many silent windows after SPEECH_WINDOWS voiced ones end an utterance, for this session's
    segmenter config (a separate, pure segmenter answers it)."""
    probe = Segmenter(session.turn_config)
    window = np.full(512, 0.3, dtype=np.float32)
    probe.feed(np.ones(SPEECH_WINDOWS, dtype=np.float32), [window] * SPEECH_WINDOWS)
    for n in range(1, 200):
        if any(isinstance(e, Ended) for e in probe.feed(np.zeros(1, dtype=np.float32), [window * 0])):
            return n
    raise AssertionError("the segmenter never ended the utterance")


async def test_an_utterance_ended_by_the_resampler_tail_on_a_rate_change_is_finalized() -> None:
    """``session.update`` with a new sample_rate flushes the resampler; if that tail completes the end of
    an utterance, the final must still come (it used to be logged and dropped)."""
    vad = ScriptedVad()
    async with services(asr=FakeAsr(text="tail end"), vad=vad, settings=make_settings(batching=False)) as svc:
        config = SessionConfig(sample_rate=8000, language="en", interim_results=False)
        session = StreamSession("sess_tail", "key", config, svc)
        sink = Sink()
        outbox = Outbox(sink, maxsize=64)
        writer = asyncio.create_task(outbox.run())
        session.attach(outbox)
        silent = _silence_to_end(session)
        vad.script = [1.0] * SPEECH_WINDOWS + [0.0] * silent
        # every frame but the last needed window's: the utterance is one silent window short of its end
        while vad.calls < SPEECH_WINDOWS + silent - 1:
            await session.push_audio(FRAME_8K)
        assert "speech.stopped" not in sink.types()

        await session.update_config(config.model_copy(update={"sample_rate": 16000}))
        assert vad.calls == SPEECH_WINDOWS + silent, "the resampler's tail brought the last window"
        await session.drain()
        await outbox.finish()
        await writer

    types = sink.types()
    assert types.count("speech.stopped") == 1
    assert types.count("transcript.final") == 1, types


async def test_abort_does_not_swallow_a_cancellation_of_its_caller() -> None:
    """``abort()`` waits for the session's tasks to stop; a cancel aimed at the task calling it must
    propagate (``suppress(BaseException)`` used to eat it, and the caller ran on as if not cancelled)."""
    async with services() as svc:
        session = StreamSession("sess_abort", "key", SessionConfig(language="en"), svc)
        session.attach(Outbox(Sink(), maxsize=8))
        await asyncio.sleep(0)  # the emitter is running, waiting for finals
        went_on = asyncio.Event()

        async def caller() -> None:
            await session.abort()
            went_on.set()

        task = asyncio.create_task(caller())
        await asyncio.sleep(0)  # abort() has cancelled the emitter and waits for it to stop
        task.cancel()
        await asyncio.wait({task})
        assert task.cancelled()
        assert not went_on.is_set()


class _BrokenSocket:
    """A WebSocket whose sends fail with something other than a timeout or a connection error."""

    closed = False

    async def send_str(self, text: str) -> None:
        raise RuntimeError("cannot write to closing transport")


async def _put_many(outbox: Outbox, n: int) -> None:
    for i in range(n):
        await outbox.put(Pong(id=str(i)))


async def test_a_writer_failing_for_any_reason_abandons_the_outbox() -> None:
    """A writer that dies of an error other than a slow consumer must not leave producers waiting for
    room in a queue nobody drains any more (only ``SlowConsumerError`` used to abandon it)."""
    async with services(settings=make_settings(session_out_queue=2)) as svc:
        registry = SessionRegistry(svc)
        session = StreamSession("sess_writer", "key", SessionConfig(language="en"), svc)
        connection = Connection(registry, _BrokenSocket(), session)  # type: ignore[arg-type]
        outbox = connection.outbox
        writer = asyncio.create_task(outbox.run())
        writer.add_done_callback(connection._writer_done)
        await outbox.put(Pong(id="first"))  # its send fails: the writer is gone
        await asyncio.wait({writer})
        await asyncio.sleep(0)  # the done callback runs
        # more than the queue holds: with nobody draining it, only an abandoned outbox lets these go
        producer = asyncio.create_task(_put_many(outbox, 3))
        done, _ = await asyncio.wait({producer}, timeout=1.0)
        assert producer in done, "a producer is still waiting for room in a dead outbox"
        assert isinstance(writer.exception(), RuntimeError)
