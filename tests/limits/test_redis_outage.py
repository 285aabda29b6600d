"""Redis stops mid-run and comes back: the outage policy decides what limits do meanwhile, nothing
crashes, /readyz tells, and limits are enforced again once Redis answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from streamer.client import StreamerClient

from .conftest import (
    RedisProcess,
    create_key,
    error_of,
    events_until_closed,
    frames,
    post_session,
    quiet,
    tone,
)

pytestmark = pytest.mark.redis


async def _readyz(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, str]]:
    async with http.get(f"{base}/readyz") as r:
        body = await r.json()
        return r.status, body["checks"]


async def _until_ready(http: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 5
    while (await _readyz(http, base))[0] != 200:
        assert time.monotonic() < deadline, "never ready again after Redis came back"
        await asyncio.sleep(0.05)


async def _server(make_server: Any, vad: Any, redis_process: RedisProcess, policy: str) -> TestServer:
    await redis_process.start()
    # the static key is "free": one concurrent session, so whether the limit holds is visible
    settings = make_settings(redis_url=redis_process.url, redis_policy=policy, api_key_tier="free")
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=vad)
    return server


async def test_fail_open(make_server: Any, vad: Any, redis_process: RedisProcess) -> None:
    server = await _server(make_server, vad, redis_process, "fail_open")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        admin_key = (await create_key(http, base))["key"]
        assert (await post_session(http, base, API_KEY))[0] == 201
        assert (await post_session(http, base, API_KEY))[0] == 429  # enforced while Redis is up
        assert (await _readyz(http, base))[0] == 200

        redis_process.stop()
        status, checks = await _readyz(http, base)
        assert status == 503 and checks["state_backend"].startswith("unreachable")
        started = time.monotonic()
        assert [(await post_session(http, base, API_KEY))[0] for _ in range(3)] == [201] * 3  # not enforced
        assert time.monotonic() - started < 2.0  # refusals to connect are quick, not timeouts
        # a key that only Redis knows cannot be checked: retry later, not "your key is bad"
        status, body, headers = await post_session(http, base, admin_key)
        assert (status, body["error"]["code"], headers["Retry-After"]) == (503, "overloaded", "2")

        # a whole session runs: token check, audio quota and slot upkeep all fail open
        async with StreamerClient(base, api_key=API_KEY, http=http) as client:
            stream = await client.connect({"interim_results": False})
            for frame in frames(tone(0.5) + quiet(1.0)):
                await stream.ws.send_bytes(frame)
            await stream.commit()
            await stream.close_session()
            events = await events_until_closed(stream)
        assert stream.close_code == 1000, events
        assert [e["text"] for e in events if e["type"] == "transcript.final"] == ["hello world"]

        await redis_process.start()
        await _until_ready(http, base)
        assert (await post_session(http, base, API_KEY))[0] == 201
        status, body, _ = await post_session(http, base, API_KEY)
        assert (status, body["error"]["code"]) == (429, "concurrent_sessions_exceeded")  # enforced again
        assert (await post_session(http, base, admin_key))[0] == 401  # a fresh Redis: the key is gone


async def test_fail_closed(make_server: Any, vad: Any, redis_process: RedisProcess) -> None:
    server = await _server(make_server, vad, redis_process, "fail_closed")
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        async with StreamerClient(base, api_key=API_KEY, http=http) as client:
            live = await client.connect()  # holds the key's only slot

            redis_process.stop()
            status, body, headers = await post_session(http, base, API_KEY)
            assert (status, body["error"]["code"]) == (503, "overloaded")
            assert headers["Retry-After"] == "2"
            assert (await _readyz(http, base))[0] == 503

            # the live session's next audio charge cannot be made: it ends, retryable, with 1013
            for frame in frames(quiet(1.5)):
                try:
                    await live.ws.send_bytes(frame)
                except ConnectionError:
                    break
            events = await events_until_closed(live)
            error = error_of(events)
            assert (error["code"], error["retryable"], live.close_code) == ("overloaded", True, 1013)

        await redis_process.start()
        await _until_ready(http, base)
        assert (await post_session(http, base, API_KEY))[0] == 201
        assert (await post_session(http, base, API_KEY))[0] == 429
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
