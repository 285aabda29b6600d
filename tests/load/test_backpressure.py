"""Admission control and backpressure on a real server: the real VAD, a fake model with knobs.

What must hold under load: new sessions are refused (503 + Retry-After) rather than slowing everyone
down; the model queue and each session's queues stay bounded; a client that stops reading is cut off
instead of growing server memory; and sessions that behave keep getting every final.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings, read_pcm16, silence, to_bytes

from streamer.client import ClientError, Stream, StreamerClient
from streamer.edge.handshake import REGISTRY, SERVICES
from streamer.services import Services
from streamer.session.finals import PENDING_FINALS

ServerFactory = Callable[..., Awaitable[TestServer]]
UTTERANCES = ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav")
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# make_settings allows 20x real time after a 30 s burst: 40x for under 50 s of audio stays inside it
SPEED_LIMIT = 40.0


def speech(repeats: int, gap_s: float = 0.7) -> bytes:
    """The three fixture utterances ``repeats`` times over, each followed by ``gap_s`` of silence."""
    parts = [silence(0.3)]
    for _ in range(repeats):
        for name in UTTERANCES:
            parts += [read_pcm16(name), silence(gap_s)]
    return to_bytes(np.concatenate(parts))


async def send_fast(ws: aiohttp.ClientWebSocketResponse, pcm: bytes, speed: float = 15.0) -> None:
    """100 ms frames at ``speed`` x real time (make_settings allows 20x after a 30 s burst)."""
    for i in range(0, len(pcm), 3200):
        await ws.send_bytes(pcm[i : i + 3200])
        await asyncio.sleep(0.1 / speed)


async def converse(
    stream: Stream, pcm: bytes, speed: float = 15.0, timeout: float = 30
) -> list[dict[str, Any]]:
    """A well-behaved client: send ``pcm`` then ``session.close`` while reading every event."""

    async def send() -> None:
        await send_fast(stream.ws, pcm, speed)
        await stream.close_session()

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(timeout):
            events = [event async for event in stream]
            await sender
    finally:
        sender.cancel()
    return events


def finals_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "transcript.final"]


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.01)


@dataclass
class Gauge:
    """Samples the shared batcher every 10 ms while load runs."""

    services: Services
    finals_pending: list[int] = field(default_factory=list)
    finals_waiting: list[int] = field(default_factory=list)
    partials_waiting: list[int] = field(default_factory=list)

    async def run(self) -> None:
        batcher = self.services.asr_batcher
        while True:
            finals, partials = batcher.depth
            self.finals_pending.append(batcher.finals_pending)
            self.finals_waiting.append(finals)
            self.partials_waiting.append(partials)
            await asyncio.sleep(0.01)


# ---- admission control


async def test_session_limit_refuses_new_sessions_with_503(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(max_sessions=4), asr_engine=FakeAsr())
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        assert client.http is not None
        early = await client.create_session()  # minted while there was room; used below
        streams = [await client.connect() for _ in range(4)]
        assert len(server.app[REGISTRY].sessions) == 4

        async with client.http.post(f"{base_url(server)}/v1/sessions", headers=AUTH, json={}) as r:
            body = await r.json()
            assert r.status == 503, body
            assert body["error"]["code"] == "overloaded"
            assert int(r.headers["Retry-After"]) >= 1
        # a token minted before the server filled up is refused at the upgrade, not accepted
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.http.ws_connect(f"{client.ws_url(early)}?token={early.token}")
        assert refused.value.status == 503
        assert len(server.app[REGISTRY].sessions) == 4

        # one session leaves: there is room again
        await converse(streams[0], b"")
        await streams[0].ws.close()
        await eventually(lambda: len(server.app[REGISTRY].sessions) == 3, 5, "the closed session to leave")
        async with await client.connect() as again:
            assert again.created is not None
        for stream in streams[1:]:
            await stream.ws.close()


async def test_saturated_model_refuses_new_sessions_and_queues_stay_bounded(
    make_server: ServerFactory,
) -> None:
    """A slow model: latency climbs past ``saturation_latency_s`` and admission control says 503.

    ``SessionRegistry.check_capacity`` refuses (after the session limit and an open breaker) when the batcher
    ran a batch in the last 5 s and its final latency EWMA (queue wait + model time) is above
    ``saturation_latency_s``. Meanwhile nothing grows without bound: each session holds at most
    ``PENDING_FINALS`` queued finals (plus the one its emitter awaits, the one being queued, and a
    speculative one), so the model queue is capped per session however fast audio arrives, and
    partials are coalesced to one per session.
    """
    sessions, repeats = 3, 4  # 12 utterances per session, sent much faster than the model keeps up
    settings = make_settings(saturation_latency_s=0.2, max_batch=2, partial_interval_ms=300)
    engine = FakeAsr(delay=0.3)
    server = await make_server(settings, asr_engine=engine)
    services = server.app[SERVICES]
    gauge = Gauge(services)
    sampler = asyncio.create_task(gauge.run())
    pcm = speech(repeats)

    try:
        async with StreamerClient(base_url(server), api_key=API_KEY) as client:
            # every session is admitted before the load starts
            streams = [await client.connect({"language": "en"}) for _ in range(sessions)]
            load = [asyncio.create_task(converse(stream, pcm, SPEED_LIMIT, 60)) for stream in streams]
            batcher = services.asr_batcher
            await eventually(lambda: batcher.calls.latency_ewma_s > 0.2, 30, "the model to saturate")
            with pytest.raises(ClientError) as refused:
                await client.create_session()
            assert refused.value.status == 503 and refused.value.code == "overloaded"
            assert refused.value.retry_after is not None and refused.value.retry_after >= 1
            saturated = services.metrics.registry.get_sample_value(
                "streamer_refusals_total", {"reason": "saturated"}
            )
            assert saturated == 1.0  # refused for latency, not for the session or queue limits
            results = await asyncio.wait_for(asyncio.gather(*load), 60)
            for stream in streams:
                await stream.ws.close()
    finally:
        sampler.cancel()

    for events in results:
        # slow, but nothing dropped: every utterance's final arrives, in order, without gaps
        finals = finals_of(events)
        assert [f["seq"] for f in finals] == list(range(1, len(finals) + 1))
        assert len(finals) == len(UTTERANCES) * repeats
        assert events[-1]["type"] == "session.closed" and events[-1]["finals"] == len(finals)
    per_session = PENDING_FINALS + 3
    assert max(gauge.finals_pending) <= sessions * per_session, max(gauge.finals_pending)
    assert max(gauge.finals_waiting) <= sessions * per_session
    assert max(gauge.partials_waiting) <= sessions  # latest-wins: one per session
    # the load really was more than the model could take: 36 utterances arrive within about a second,
    # the model finishes ~7 a second, so without backpressure far more than the bound would be pending
    assert max(gauge.finals_pending) >= sessions * PENDING_FINALS
    assert batcher.finals_pending == 0 and batcher.depth == (0, 0)  # and it all drained


async def test_failing_model_opens_the_breaker_and_new_sessions_are_refused(
    make_server: ServerFactory,
) -> None:
    settings = make_settings(breaker_threshold=1, breaker_reset_s=30.0)
    server = await make_server(settings, asr_engine=FakeAsr(fail=True))
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        async with stream:

            async def talk() -> None:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                    await send_fast(stream.ws, speech(1))

            talker = asyncio.create_task(talk())
            async with asyncio.timeout(20):
                events = [event async for event in stream]  # up to session.closed
                assert await stream.receive() is None  # then the close frame
            talker.cancel()
        # the session that hit the failure is told why, and to come back later
        errors = [e for e in events if e["type"] == "error"]
        assert errors and errors[-1]["code"] == "model_unavailable" and errors[-1]["retryable"]
        assert stream.close_code == 1013
        # while the breaker is open, nobody new is let in to wait for a model that is down
        with pytest.raises(ClientError) as refused:
            await client.create_session()
        assert refused.value.status == 503 and refused.value.code == "model_unavailable"
        assert refused.value.retry_after is not None and refused.value.retry_after > 20


# ---- a client that stops reading


def tiny_receive_window(addr_info: Any) -> socket.socket:
    """A client socket with a 4 KiB receive buffer (set before connect, so the TCP window is small)."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


# every final and partial carries this (about 25 KB of JSON): a few of them fill the socket buffers
# big events from few words: more words than the audio could hold would be rejected as a decoding loop
LONG_TEXT = " ".join(f"word{i}" + "o" * 6_000 for i in range(4))


async def test_slow_reader_is_cut_off_and_others_are_unaffected(make_server: ServerFactory) -> None:
    settings = make_settings(session_out_queue=8, send_timeout_s=1.0, partial_interval_ms=200)
    server = await make_server(settings, asr_engine=FakeAsr(text=LONG_TEXT))
    registry = server.app[REGISTRY]
    url = base_url(server)
    connector = aiohttp.TCPConnector(socket_factory=tiny_receive_window)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{url}/v1/sessions", headers=AUTH, json={"language": "en"}) as r:
            assert r.status == 201
            info = await r.json()
        slow_id = info["session_id"]
        # aiohttp buffers 64 KiB of messages and then stops reading the socket until receive() is
        # called, which it never is: from here on this client does not read
        ws = await http.ws_connect(f"{url.replace('http', 'ws', 1)}/v1/stream?token={info['token']}")
        connection = registry.connections[slow_id]
        outbox = connection.outbox
        queue = outbox._queue  # the bounded queue under test
        sizes: list[int] = []

        async def watch() -> None:
            while True:
                sizes.append(queue.qsize())
                await asyncio.sleep(0.005)

        async def talk() -> None:
            # audio makes big events; the pings make small ones the server must deliver (pongs), so
            # once the socket is clogged the session's reader waits for room in the outbox
            pcm = speech(3, gap_s=0.5)
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                for n, i in enumerate(range(0, len(pcm), 3200)):
                    await ws.send_bytes(pcm[i : i + 3200])
                    if n % 5 == 0:
                        await ws.send_str('{"type": "ping"}')
                    await asyncio.sleep(0.1 / 15)

        async def behave() -> list[dict[str, Any]]:
            async with StreamerClient(url, api_key=API_KEY) as client:
                stream = await client.connect({"language": "en"})
                async with stream:
                    return await converse(stream, speech(1), speed=10.0)

        watcher = asyncio.create_task(watch())
        talker = asyncio.create_task(talk())
        try:
            good = await asyncio.wait_for(behave(), 40)
            # the server stops writing to it once a send has waited send_timeout_s ...
            await eventually(lambda: outbox.closed, 20, "the server to give up on the slow reader")
            # ... and then lets the session go instead of holding it (and its slot) forever
            await eventually(
                lambda: slow_id not in registry.sessions and slow_id not in registry.connections,
                settings.send_timeout_s + 4,
                "the slow session to be removed",
            )
        finally:
            watcher.cancel()
            talker.cancel()
        assert max(sizes) <= settings.session_out_queue
        assert outbox.dropped > 0  # partials were refused once the queue was half full
        # the connection is closed: once this client reads again it finds the end of the stream
        async with asyncio.timeout(10):
            while (await ws.receive()).type not in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                pass
        await ws.close()

    finals = finals_of(good)
    assert len(finals) == len(UTTERANCES), [f["seq"] for f in finals]
    assert [f["seq"] for f in finals] == [1, 2, 3]
    assert good[-1]["type"] == "session.closed"
