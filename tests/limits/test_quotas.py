"""Quotas under races: concurrent sessions per key, the daily audio allowance, the session-creation rate."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import base_url, make_settings

from streamer.client import StreamerClient
from streamer.edge.handshake import SERVICES
from streamer.session.quota import CHARGE_STEP_S
from streamer.state.backend import MemoryBackend, StateBackend

from .conftest import EnergyVad, create_key, error_of, events_until_closed, frames, post_session, quiet


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> StateBackend:
    if request.param == "memory":
        return MemoryBackend()
    redis_backend: StateBackend = request.getfixturevalue("redis_backend")
    return redis_backend


async def test_parallel_creates_admit_exactly_the_limit(make_server: Any, backend: StateBackend) -> None:
    server: TestServer = await make_server(asr_engine=FakeAsr(), vad=EnergyVad(), backend=backend)
    base = base_url(server)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        key = (await create_key(http, base, tier="standard", max_sessions=5))["key"]
        results = await asyncio.gather(*(post_session(http, base, key) for _ in range(50)))
    admitted = [r for r in results if r[0] == 201]
    refused = [r for r in results if r[0] != 201]
    assert len(admitted) == 5
    assert {status for status, _, _ in refused} == {429}
    for _, body, headers in refused:
        assert body["error"]["code"] == "concurrent_sessions_exceeded"
        assert int(headers["Retry-After"]) >= 1
        assert headers["X-RateLimit-Limit"] == "5"
        assert headers["X-RateLimit-Remaining"] == "0"
        assert int(headers["X-RateLimit-Reset"]) > 0
    remaining = sorted(int(h["X-RateLimit-Remaining"]) for _, _, h in admitted)
    assert remaining == [0, 1, 2, 3, 4]
    assert all(h["X-RateLimit-Limit"] == "5" for _, _, h in admitted)


async def test_daily_audio_quota_holds_across_parallel_sessions(
    make_server: Any, backend: StateBackend
) -> None:
    """Bound: total accepted audio < limit + sessions x CHARGE_STEP_S.

    Each charge is one atomic check-and-add on the backend, so the *charged* total never passes the limit.
    A session sends audio on credit until it has CHARGE_STEP_S uncharged, then charges all of it; the
    frame whose charge is refused is itself not accepted, so what a session got without paying is strictly
    less than one step. With N sessions: accepted < limit + N * step (here 3 s + 4 x 1 s = 7 s).
    """
    limit, sessions = 3.0, 4
    server: TestServer = await make_server(asr_engine=FakeAsr(), vad=EnergyVad(), backend=backend)
    base = base_url(server)
    metrics = server.app[SERVICES].metrics
    async with aiohttp.ClientSession() as http:
        made = await create_key(http, base, max_sessions=10, audio_seconds_per_day=limit)
    key, key_id = made["key"], made["key_id"]

    async def stream_until_refused(client: StreamerClient) -> list[dict[str, Any]]:
        stream = await client.connect()
        for frame in frames(quiet(limit + 2 * CHARGE_STEP_S)):  # more than one session could ever get
            try:
                await stream.ws.send_bytes(frame)
            except ConnectionError:
                break
            await asyncio.sleep(0)
        return await events_until_closed(stream)

    async with StreamerClient(base, api_key=key) as client:
        results = await asyncio.gather(*(stream_until_refused(client) for _ in range(sessions)))
        for events in results:
            err = error_of(events)
            assert (err["code"], err["retryable"]) == ("audio_quota_exceeded", True)
            assert events[-1]["type"] == "session.closed"
        accepted = metrics.audio_seconds._value.get()
        assert limit - CHARGE_STEP_S < accepted < limit + sessions * CHARGE_STEP_S
        # when the sessions are over, what they were given on credit is on the key's account too
        assert await _eventually_used(backend, key_id, accepted) == pytest.approx(accepted)
        # the key is spent: a new session is refused at its first charge
        late = await events_until_closed(await _send_all(client, quiet(1.5)))
        assert error_of(late)["code"] == "audio_quota_exceeded"
    assert await backend.audio_used(key_id) < limit + (sessions + 1) * CHARGE_STEP_S


async def _eventually_used(backend: StateBackend, key_id: str, expected: float) -> float:
    """The key's recorded usage once it reaches ``expected`` (sessions settle as their sockets close)."""
    for _ in range(250):
        used = await backend.audio_used(key_id)
        if used >= expected - 1e-6:
            return used
        await asyncio.sleep(0.02)
    return await backend.audio_used(key_id)


async def _send_all(client: StreamerClient, pcm: bytes) -> Any:
    stream = await client.connect()
    for frame in frames(pcm):
        await stream.ws.send_bytes(frame)
    return stream


async def test_closed_sessions_are_charged_for_their_last_second(make_server: Any) -> None:
    """Audio sent on credit is charged when the session ends, so short sessions are not free."""
    backend = MemoryBackend()
    server: TestServer = await make_server(asr_engine=FakeAsr(), vad=EnergyVad(), backend=backend)
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        made = await create_key(http, base, audio_seconds_per_day=1000.0)
    async with StreamerClient(base, api_key=made["key"]) as client:
        for _ in range(3):
            stream = await _send_all(client, quiet(0.5))
            await stream.close_session()
            events = await events_until_closed(stream)
            assert stream.close_code == 1000, events
    assert await _eventually_used(backend, made["key_id"], 1.5) == pytest.approx(1.5)


async def test_session_creation_rate_per_key(make_server: Any) -> None:
    settings = make_settings(session_rate_per_key_per_min=6.0)  # 0.1 per second, burst 6
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        first = (await create_key(http, base, tier="unlimited"))["key"]
        second = (await create_key(http, base, tier="unlimited"))["key"]
        statuses = [(await post_session(http, base, first))[0] for _ in range(6)]
        assert statuses == [201] * 6
        status, body, headers = await post_session(http, base, first)
        assert status == 429
        assert body["error"]["code"] == "session_rate_exceeded"
        assert 1 <= int(headers["Retry-After"]) <= 10
        # per key: another key is not affected
        assert (await post_session(http, base, second))[0] == 201


async def test_refused_sessions_do_not_hold_slots(make_server: Any) -> None:
    server: TestServer = await make_server(asr_engine=FakeAsr(), vad=EnergyVad())
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        key = (await create_key(http, base, max_sessions=1))["key"]
        async with StreamerClient(base, api_key=key, http=http) as client:
            stream = await client.connect()
            assert (await post_session(http, base, key))[0] == 429
            await stream.close_session()
            await events_until_closed(stream)
            deadline = time.monotonic() + 5
            while (await post_session(http, base, key))[0] != 201:
                assert time.monotonic() < deadline, "the slot was not given back"
                await asyncio.sleep(0.05)
