"""The model's circuit breaker and call timeout as clients see them: fast `model_unavailable` + 1013,
503 for new sessions, /readyz, and recovery."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from streamer.client import Stream, StreamerClient
from streamer.edge.handshake import SERVICES

from .conftest import ADMIN, error_of, events_until_closed, frames, post_session, tone

NO_PARTIALS = {"interim_results": False}


async def _speak(stream: Stream) -> float:
    """One utterance, ended with a commit; returns when the commit was sent."""
    for frame in frames(tone(0.5)):
        await stream.ws.send_bytes(frame)
    await stream.commit()
    return time.monotonic()


async def _final_or_close(stream: Stream) -> tuple[list[dict[str, Any]], float]:
    """Events up to the first final or the close, and when that came."""
    events: list[dict[str, Any]] = []
    while True:
        event = await stream.receive(timeout=10)
        if event is None or event["type"] == "transcript.final":
            return ([*events, event] if event else events), time.monotonic()
        events.append(event)


async def _readyz(server: TestServer) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url(server)}/readyz") as r:
        return r.status, await r.json()


async def _fails_fast(client: StreamerClient) -> None:
    stream = await client.connect(NO_PARTIALS)
    committed = await _speak(stream)
    events = await events_until_closed(stream)
    error = error_of(events)
    assert (error["code"], error["retryable"], stream.close_code) == ("model_unavailable", True, 1013)
    assert events[-1]["type"] == "session.closed"
    assert time.monotonic() - committed < 1.0


async def _works(client: StreamerClient) -> None:
    stream = await client.connect(NO_PARTIALS)
    await _speak(stream)
    events, _ = await _final_or_close(stream)
    assert events[-1]["type"] == "transcript.final", events
    await stream.close_session()
    await events_until_closed(stream)
    assert stream.close_code == 1000


async def test_failing_model_opens_the_breaker_and_recovers(make_server: Any, vad: Any) -> None:
    asr = FakeAsr(fail=True)
    settings = make_settings(breaker_threshold=3, breaker_reset_s=1.0)
    server: TestServer = await make_server(settings, asr_engine=asr, vad=vad)
    breaker = server.app[SERVICES].breakers["asr"]
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        waiting = await client.connect(NO_PARTIALS)  # connected before the breaker opens
        for _ in range(3):
            await _fails_fast(client)  # one at a time: each is one failed model call
        assert breaker.state.value == "open"

        # a live session is answered at once, without calling the model
        calls = len(asr.batches)
        committed = await _speak(waiting)
        events = await events_until_closed(waiting)
        assert error_of(events)["code"] == "model_unavailable" and waiting.close_code == 1013
        assert time.monotonic() - committed < 0.5
        assert len(asr.batches) == calls

        async with aiohttp.ClientSession() as http:
            status, body, headers = await post_session(http, base_url(server), API_KEY)
        assert (status, body["error"]["code"]) == (503, "model_unavailable")
        assert int(headers["Retry-After"]) >= 1
        status, ready = await _readyz(server)
        assert (status, ready["status"], ready["checks"]["breaker_asr"]) == (503, "not_ready", "open")

        asr.fail = False
        await asyncio.sleep(breaker.reset_timeout_s)
        status, ready = await _readyz(server)
        assert (status, ready["checks"]["breaker_asr"]) == (200, "half_open")  # ready, to let a probe in
        await _works(client)  # the probe
        assert breaker.state.value == "closed"
        assert (await _readyz(server))[0] == 200
        await _works(client)


async def test_operator_resets_the_breaker(make_server: Any, vad: Any) -> None:
    asr = FakeAsr(fail=True)
    settings = make_settings(breaker_threshold=2, breaker_reset_s=60.0)
    server: TestServer = await make_server(settings, asr_engine=asr, vad=vad)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        for _ in range(2):
            await _fails_fast(client)
        async with aiohttp.ClientSession() as http:
            assert (await post_session(http, base_url(server), API_KEY))[0] == 503
            asr.fail = False
            async with http.post(f"{base_url(server)}/v1/admin/breakers/asr/reset", headers=ADMIN) as r:
                assert r.status == 200 and (await r.json())["state"] == "closed"
        await _works(client)
        assert (await _readyz(server))[0] == 200


async def test_hanging_model_times_out(make_server: Any, vad: Any) -> None:
    asr = FakeAsr(hang=True)
    settings = make_settings(model_timeout_s=0.5)
    server: TestServer = await make_server(settings, asr_engine=asr, vad=vad)
    try:
        async with StreamerClient(base_url(server), api_key=API_KEY) as client:
            stream = await client.connect(NO_PARTIALS)
            committed = await _speak(stream)
            events = await events_until_closed(stream)
            error = error_of(events)
            assert (error["code"], error["retryable"], stream.close_code) == ("model_unavailable", True, 1013)
            assert time.monotonic() - committed < settings.model_timeout_s + 1.0

            async with aiohttp.ClientSession() as http:
                status, body, _ = await post_session(http, base_url(server), API_KEY)
            assert (status, body["error"]["code"]) == (503, "model_unavailable")
            status, ready = await _readyz(server)
            assert (status, ready["checks"]["asr_model"]) == (503, "not responding")

            asr.hang = False
            asr.release()  # the stuck call returns; the model thread is free again
            deadline = time.monotonic() + 5
            while (await _readyz(server))[0] != 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await _works(client)
    finally:
        asr.release()
