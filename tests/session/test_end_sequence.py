"""A connection's end, and what the registry does with the session after it (issue 22: D2, D3, D6).

- D2: a session whose model failed while it was parked is not resumed as a zombie (an emitter that
  ended on the error was never restarted): the resumed connection says why and closes.
- D3: waiting for a parked session to settle is bounded, for a resume and for shutdown.
- Readiness is false while a connection's end overruns the bounds of its steps ("stuck").
- D6: a session keeps a bounded history, and ``abort`` joins every task it started.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import eventually, next_event, send_audio, utterance
from support import API_KEY, ServerFactory, base_url, make_settings

from session.doubles import ScriptedVad, Sink, services
from streamer.client import StreamerClient
from streamer.edge.handshake import REGISTRY
from streamer.pipeline.segmenter import Ended, Segmenter
from streamer.protocol import SessionConfig, TranscriptFinal
from streamer.session.durable import SessionBusyError
from streamer.session.ending import Endings
from streamer.session.finals import HISTORY_KEEP
from streamer.session.outbox import Outbox
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

SPEECH_WINDOWS = 20
FRAME_8K = np.zeros(160, dtype="<i2").tobytes()  # 20 ms at 8 kHz: one scripted VAD window per push


class _Gone:
    """An Attachment whose socket has already gone."""

    async def hand_over(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def _silence_to_end(session: StreamSession) -> int:
    probe = Segmenter(session.turn_config)
    window = np.full(512, 0.3, dtype=np.float32)
    probe.feed(np.ones(SPEECH_WINDOWS, dtype=np.float32), [window] * SPEECH_WINDOWS)
    for n in range(1, 200):
        if any(isinstance(e, Ended) for e in probe.feed(np.zeros(1, dtype=np.float32), [window * 0])):
            return n
    raise AssertionError("the segmenter never ended the utterance")


async def _speak(session: StreamSession, vad: ScriptedVad, ended: int, open_after: bool) -> None:
    """``ended`` whole utterances, then (``open_after``) one more left open."""
    silent = _silence_to_end(session)
    vad.script = ([1.0] * SPEECH_WINDOWS + [0.0] * silent) * ended + [1.0] * SPEECH_WINDOWS * open_after
    while vad.calls < len(vad.script):
        await session.push_audio(FRAME_8K)


async def test_a_session_whose_model_failed_while_parked_is_not_resumed_as_a_zombie(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    asr = FakeAsr(hang=True)  # answers nothing until released: then it fails, after the client has gone
    server = await make_server(make_settings(resume_window_s=30.0, breaker_threshold=100), asr_engine=asr)
    registry = server.app[REGISTRY]
    try:
        await _resume_after_failure(server, asr, caplog)
    finally:
        asr.release()
    await eventually(lambda: not registry.parked and not registry.sessions, "the session to be released")


async def _resume_after_failure(server: TestServer, asr: FakeAsr, caplog: pytest.LogCaptureFixture) -> None:
    registry = server.app[REGISTRY]
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        await send_audio(stream, utterance(tail_s=1.0), speed=20.0)
        await next_event(stream, "speech.stopped")
        transport = stream.ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()  # gone before the model's answer: the session is parked
        sid = stream.info.session_id
        await eventually(lambda: sid in registry.parked, "the session to be parked")
        asr.fail = True
        asr.release()
        await eventually(
            lambda: any("final for segment 1 failed" in r.getMessage() for r in caplog.records),
            "the parked session's final to fail",
            10,
        )

        resumed = await client.resume(stream)
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while (event := await resumed.receive()) is not None:
                events.append(event)
        errors = [e for e in events if e["type"] == "error"]
        assert [e["code"] for e in errors] == ["model_unavailable"], events
        assert events[-1]["type"] == "session.closed" and events[-1]["reason"] == "model_unavailable"
        assert resumed.close_code == 1013


async def test_readiness_is_false_while_a_connection_is_stuck_ending(make_server: ServerFactory) -> None:
    server: TestServer = await make_server(asr_engine=FakeAsr())
    registry = server.app[REGISTRY]
    now = [1000.0]
    registry.endings = endings = Endings(registry.endings.bound_s, lambda: now[0])

    async def ready() -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base_url(server)}/readyz") as r:
                body: dict[str, Any] = await r.json()
                return r.status, body

    connection = object()
    endings.begin(connection)
    now[0] += endings.bound_s - 0.1  # ending, within the bounds of its steps: still ready
    assert (await ready())[0] == 200
    now[0] += 0.2
    status, body = await ready()
    assert status == 503 and body["checks"]["sessions"] == "1 stuck ending", body
    endings.done(connection)
    assert (await ready())[0] == 200


async def test_resume_and_shutdown_wait_a_bounded_time_for_a_parked_session_to_settle() -> None:
    """A model that hangs (no watchdog here) keeps the parked session from finalizing its open utterance:
    the finals queue is full and its emitter waits on the first decode. A resume says busy, shutdown
    releases it anyway; neither waits for the model."""
    asr, vad = FakeAsr(hang=True), ScriptedVad()
    settings = make_settings(batching=False, resume_window_s=30.0, drain_timeout_s=0.3)
    try:
        async with services(asr=asr, vad=vad, settings=settings) as svc:
            registry = SessionRegistry(svc)
            config = SessionConfig(sample_rate=8000, language="en", interim_results=False)
            session = registry.open("sess_hung", "key", config)
            outbox = Outbox(Sink(), maxsize=64)
            writer = asyncio.create_task(outbox.run())
            connection = _Gone()
            registry.attach(session, connection, outbox)
            await _speak(session, vad, ended=5, open_after=True)  # 1 decoding, 4 queued, 1 open
            registry.detach(session, connection, ended=False)  # its commit waits for room: unsettled
            assert "sess_hung" in registry.parked

            async with asyncio.timeout(5):
                with pytest.raises(SessionBusyError):
                    await registry.resume("sess_hung", "key")
                await registry.close()
            assert not registry.parked
            writer.cancel()
    finally:
        asr.release()


async def test_history_is_bounded_and_abort_joins_the_sessions_tasks() -> None:
    vad = ScriptedVad()
    async with services(asr=FakeAsr(text="again"), vad=vad, settings=make_settings(batching=False)) as svc:
        config = SessionConfig(sample_rate=8000, language="en", interim_results=True)
        session = StreamSession("sess_long", "key", config, svc)
        outbox = Outbox(Sink(), maxsize=1024, max_bytes=1 << 24)
        writer = asyncio.create_task(outbox.run())
        session.attach(outbox)
        await _speak(session, vad, ended=HISTORY_KEEP + 6, open_after=True)
        await eventually(lambda: session.seq == HISTORY_KEEP + 6, "every final", 20)
        assert len(session.history) == HISTORY_KEEP
        assert [m.seq for m in session.history if isinstance(m, TranscriptFinal)][-1] == HISTORY_KEEP + 6

        before = asyncio.all_tasks()
        await session.abort()
        left = {t for t in before if not t.done() and t.get_name() != writer.get_name()}
        left.discard(asyncio.current_task())  # type: ignore[arg-type]
        assert not [t for t in left if "sess_long" in repr(t) or "Partials." in repr(t)], left
        writer.cancel()


class _Stuck:
    """An Attachment whose end never completes (a bug, or a library that swallowed a cancel)."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()

    async def hand_over(self) -> None:
        self.asked.set()
        await asyncio.Event().wait()

    async def shutdown(self) -> None:
        await asyncio.Event().wait()


async def test_a_resume_does_not_wait_forever_for_a_connection_that_does_not_let_go() -> None:
    async with services(settings=make_settings(resume_window_s=30.0)) as svc:
        registry = SessionRegistry(svc)
        registry.endings = Endings(0.2, time.monotonic)  # its end's bounds, shortened for the test
        session = registry.open("sess_stuck", "key", SessionConfig(language="en"))
        connection = _Stuck()
        registry.attach(session, connection, Outbox(Sink()))
        async with asyncio.timeout(5):
            with pytest.raises(SessionBusyError):
                await registry.resume("sess_stuck", "key")
        assert connection.asked.is_set()
        registry.detach(session, connection, ended=True)
        async with asyncio.timeout(5):
            await registry.close()
