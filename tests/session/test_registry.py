"""The session registry: resumable from the moment a connection drops, and nothing left running."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import CHUNK, eventually, send_audio, utterance
from support import API_KEY, base_url, make_settings

from session.doubles import services
from streamer.client import Stream, StreamerClient
from streamer.edge.handshake import REGISTRY
from streamer.errors import OverloadedError, RateLimitedError
from streamer.guards.keys import KeyRecord
from streamer.protocol import SessionConfig
from streamer.session.outbox import Outbox
from streamer.session.registry import SessionRegistry
from streamer.state.backend import BackendUnavailableError, MemoryBackend, QuotaDecision

ServerFactory = Callable[..., Awaitable[TestServer]]


async def _count(stream: Stream, kind: str, n: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while sum(1 for _, e in stream.events if e["type"] == kind) < n:
            assert await stream.receive() is not None


async def test_a_resume_while_the_dropped_session_finishes_its_utterance_finds_it(
    make_server: ServerFactory,
) -> None:
    """Dropped mid-utterance while the model is stuck: finalizing the open utterance waits for room in
    the bounded finals queue. A resume in that window used to get 404 (the session was in neither map
    until the wait ended) and clients then started a fresh session, losing the old one's finals."""
    asr = FakeAsr(hang=True)
    server = await make_server(make_settings(resume_window_s=30.0, batching=False), asr_engine=asr)
    registry = server.app[REGISTRY]
    try:
        async with StreamerClient(base_url(server), api_key=API_KEY) as client:
            stream = await client.connect({"language": "en", "interim_results": False})
            # five utterances end while the model is stuck on the first: the emitter holds one and the
            # session's bounded finals queue (4) the others, so it is full
            for _ in range(5):
                await send_audio(stream, utterance(), speed=20.0)
            await _count(stream, "speech.stopped", 5)
            await send_audio(stream, utterance(tail_s=0.0), speed=20.0)  # an open one
            await _count(stream, "speech.started", 6)
            session_id = stream.info.session_id
            await stream.ws.close()
            await eventually(lambda: session_id not in registry.sessions, "the connection to go")

            resuming = asyncio.create_task(client.resume(stream))  # its POST answered 404 before
            await asyncio.sleep(0.3)
            assert not resuming.done(), "the resume should wait for the session to finish detaching"
            asr.release()
            resumed = await asyncio.wait_for(resuming, 10)
            await _count(resumed, "transcript.final", 6)
            await resumed.ws.close()
    finally:
        asr.release()
    finals = [e["seq"] for _, e in resumed.events if e["type"] == "transcript.final"]
    assert finals == [1, 2, 3, 4, 5, 6]


class SlowBackend(MemoryBackend):
    """Charges audio slowly and remembers when it was closed; can fail slot releases."""

    def __init__(self) -> None:
        super().__init__()
        self.charged: list[float] = []
        self.fail_release = False

    async def charge_audio(self, key_id: str, seconds: float, daily_limit: float | None) -> QuotaDecision:
        await asyncio.sleep(0.5)
        self.charged.append(seconds)
        return await super().charge_audio(key_id, seconds, daily_limit)

    async def release_session(self, key_id: str, session_id: str) -> None:
        if self.fail_release:
            raise BackendUnavailableError("connection refused")
        await super().release_session(key_id, session_id)


async def _speak_briefly_and_go(server: TestServer) -> str:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        await send_audio(stream, utterance()[: CHUNK * 5], speed=20.0)  # half a second: not charged yet
        await stream.ws.close()
    return stream.info.session_id


async def test_audio_settled_at_disconnect_is_charged_before_the_server_stops(
    make_server: ServerFactory,
) -> None:
    """The last partial second is charged in a background task; shutdown joins it (a task in a module
    global used to be left running, past the backend's close)."""
    backend = SlowBackend()
    server = await make_server(make_settings(resume_window_s=0.0), asr_engine=FakeAsr(), backend=backend)
    registry = server.app[REGISTRY]
    session_id = await _speak_briefly_and_go(server)
    await eventually(lambda: session_id not in registry.sessions, "the session to end")
    await server.close()
    assert backend.charged == [pytest.approx(0.5)]


async def test_a_slot_that_cannot_be_released_is_logged(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    backend = SlowBackend()
    backend.fail_release = True
    server = await make_server(make_settings(resume_window_s=0.0), asr_engine=FakeAsr(), backend=backend)
    registry = server.app[REGISTRY]
    with caplog.at_level(logging.WARNING, logger="streamer.session"):
        session_id = await _speak_briefly_and_go(server)
        await eventually(lambda: session_id not in registry.sessions, "the session to end")
        await server.close()
    warnings = [r for r in caplog.records if "release" in r.getMessage()]
    assert warnings and getattr(warnings[0], "session_id", None) == session_id


async def test_admit_checks_rate_capacity_and_the_keys_slots() -> None:
    """``admit`` is what token-less surfaces (the adapters) call: rate, capacity, then a concurrent slot."""
    key = KeyRecord(key_id="k1", key_hash="", name="one", tier="free", created_at=0.0, max_sessions=2)
    settings = make_settings(session_rate_per_key_per_min=3.0, max_sessions=10)
    async with services(settings=settings) as svc:
        registry = SessionRegistry(svc)
        first = await registry.admit(key, SessionConfig(language="en"))
        second = await registry.admit(key, SessionConfig(language="en"))
        assert first.session_id != second.session_id and first.key_id == "k1"
        assert await svc.backend.active_sessions("k1") == 2
        with pytest.raises(RateLimitedError) as slot:  # the key's two slots are taken
            await registry.admit(key, SessionConfig())
        assert slot.value.code == "concurrent_sessions_exceeded"
        with pytest.raises(RateLimitedError) as rate:  # three sessions a minute, all used
            await registry.admit(key, SessionConfig())
        assert rate.value.code == "session_rate_exceeded"
        registry.draining = True
        other = KeyRecord(key_id="k2", key_hash="", name="two", tier="free", created_at=0.0)
        with pytest.raises(OverloadedError):
            await registry.admit(other, SessionConfig())


class CancelSwallowingBackend(MemoryBackend):
    """A heartbeat whose client library turns a cancel that lands inside its call into its own connection
    error (what a CI shutdown looked like: the heartbeat beat on against a stopped Redis for two minutes)."""

    def __init__(self) -> None:
        super().__init__()
        self.beats = 0

    async def beat(self, instance_id: str, ttl_s: float) -> None:
        self.beats += 1
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            raise BackendUnavailableError("connection closed while cancelled") from None


async def test_closing_stops_a_heartbeat_whose_backend_swallows_the_cancel() -> None:
    # a Redis URL turns durable sessions (and so the heartbeat) on; the backend itself is injected
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    async with services(settings=settings) as svc:
        backend = CancelSwallowingBackend()
        svc = dataclasses.replace(svc, backend=backend)
        registry = SessionRegistry(svc)
        session = registry.open("sess_heartbeat", "key", SessionConfig())
        registry.attach(session, Holder(), Outbox(_discard))
        await eventually(lambda: backend.beats >= 1, "the heartbeat to start")
        await asyncio.sleep(0.02)  # the next close lands inside a beat
        await asyncio.wait_for(registry.close(), timeout=5)
        beats = backend.beats
        await asyncio.sleep(1.5)  # HEARTBEAT_EVERY_S: no beat after close
        assert backend.beats == beats


class Holder:
    """The registry's Attachment, for a session no socket carries."""

    async def hand_over(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


async def _discard(text: str) -> None:
    return None
