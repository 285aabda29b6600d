"""Per-session limits on the WebSocket: each violation gets its documented code and close code, and a
violating session does not slow down a well-behaved one."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from streamer.client import ClientError, Stream, StreamerClient

from .conftest import error_of, events_until_closed, frames, quiet, tone

VIOLATOR_KEY = "violator-key-0123456789abcdef0123456789abcdef"


async def _server(make_server: Any, vad: Any, asr: FakeAsr | None = None, **overrides: Any) -> TestServer:
    settings = make_settings(**overrides)
    server: TestServer = await make_server(settings, asr_engine=asr or FakeAsr(), vad=vad)
    return server


async def _flood(stream: Stream, messages: list[bytes | str]) -> None:
    """Send as fast as possible; stop quietly once the server has closed."""
    for message in messages:
        try:
            if isinstance(message, bytes):
                await stream.ws.send_bytes(message)
            else:
                await stream.ws.send_str(message)
        except ConnectionError:
            return


async def _violate(server: TestServer, messages: list[bytes | str]) -> tuple[dict[str, Any], int | None]:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect()
        await _flood(stream, messages)
        events = await events_until_closed(stream)
    assert events[-1]["type"] == "session.closed", events
    return error_of(events), stream.close_code


async def test_message_rate(make_server: Any, vad: Any) -> None:
    server = await _server(make_server, vad, max_messages_per_s=5.0, message_burst=5.0)
    error, close = await _violate(server, ['{"type": "ping"}'] * 20)
    assert (error["code"], close) == ("message_rate_exceeded", 1008)


async def test_audio_faster_than_real_time(make_server: Any, vad: Any) -> None:
    server = await _server(make_server, vad, max_realtime_factor=1.0, realtime_burst_s=1.0)
    error, close = await _violate(server, list(frames(quiet(3.0))))
    assert (error["code"], close) == ("audio_rate_exceeded", 1008)


async def test_frame_too_large(make_server: Any, vad: Any) -> None:
    server = await _server(make_server, vad, max_frame_ms=200)
    error, close = await _violate(server, [quiet(0.1), quiet(0.3)])
    assert (error["code"], close) == ("frame_too_large", 1009)


async def test_session_too_long_while_talking(make_server: Any, vad: Any) -> None:
    server = await _server(make_server, vad, max_session_s=0.5)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect()
        started = time.monotonic()
        reader = asyncio.create_task(events_until_closed(stream))
        for frame in frames(quiet(3.0)):  # in real time, so no other limit is reached
            if reader.done():
                break
            await _flood(stream, [frame])
            await asyncio.sleep(0.1)
        events = await reader
    assert (error_of(events)["code"], stream.close_code) == ("session_too_long", 1008)
    assert 0.5 <= time.monotonic() - started < 2.0
    assert events[-1]["audio_ms"] >= 300  # what came before the limit was accepted


async def test_session_too_long_while_silent(make_server: Any, vad: Any) -> None:
    """A client that sends nothing at all is still closed at the limit (it holds a session slot)."""
    server = await _server(make_server, vad, max_session_s=0.5)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect()
        started = time.monotonic()
        events = await events_until_closed(stream, timeout=5.0)
    assert (error_of(events)["code"], stream.close_code) == ("session_too_long", 1008)
    assert time.monotonic() - started < 2.0


async def test_violators_do_not_slow_a_good_session(make_server: Any, vad: Any) -> None:
    """Bound: with violators flooding, the good session's worst final latency (commit -> final) stays
    within its quiet baseline's worst + 0.5 s, and every one of its finals arrives, in order.

    Violators (another key) reconnect and flood messages, too-fast audio and oversized frames for the
    whole run; the model itself is quick (FakeAsr, 20 ms per batch), so what is measured is the edge's
    isolation: the event loop, the shared batcher and the good key's quotas.
    """
    server = await _server(
        make_server,
        vad,
        FakeAsr(delay=0.02),
        api_keys=(API_KEY, VIOLATOR_KEY),
        max_messages_per_s=50.0,
        message_burst=50.0,
        max_realtime_factor=3.0,
        realtime_burst_s=2.0,
    )
    utterances = 5

    async def good_session() -> list[float]:
        latencies: list[float] = []
        async with StreamerClient(base_url(server), api_key=API_KEY) as client:
            stream = await client.connect()
            for _ in range(utterances):
                for frame in frames(tone(0.5)):
                    await stream.ws.send_bytes(frame)
                    await asyncio.sleep(0.05)  # twice real time: inside every limit
                committed = time.monotonic()
                await stream.commit()
                while True:
                    event = await stream.receive(timeout=5)
                    assert event is not None and event["type"] != "error", event
                    if event["type"] == "transcript.final":
                        latencies.append(time.monotonic() - committed)
                        break
            await stream.close_session()
            events = await events_until_closed(stream)
            assert stream.close_code == 1000, events
            finals = [e["seq"] for _, e in stream.events if e["type"] == "transcript.final"]
            assert finals == list(range(1, utterances + 1))
        return latencies

    async def violator(kind: str, stop: asyncio.Event) -> int:
        closes = 0
        messages: list[bytes | str] = {
            "messages": ['{"type": "ping"}'] * 200,
            "audio": list(frames(tone(20.0), ms=1000)),
            "frames": [tone(2.0)] * 3,
        }[kind]
        async with StreamerClient(base_url(server), api_key=VIOLATOR_KEY) as client:
            while not stop.is_set():
                try:
                    stream = await client.connect()
                except ClientError as e:  # the violators' key is over its session rate: back off
                    assert e.code == "session_rate_exceeded"
                    await asyncio.sleep(0.2)
                    continue
                await _flood(stream, messages)
                await events_until_closed(stream)
                assert stream.close_code in (1008, 1009)
                closes += 1
        return closes

    baseline = await good_session()
    stop = asyncio.Event()
    violators = [asyncio.create_task(violator(k, stop)) for k in ("messages", "audio", "frames") * 2]
    try:
        loaded = await good_session()
    finally:
        stop.set()
        closes = await asyncio.gather(*violators)
    assert all(n >= 1 for n in closes), closes
    assert max(loaded) <= max(baseline) + 0.5, (baseline, loaded)
    assert statistics.median(loaded) < 0.5, loaded
