"""A private Redis restarted without persistence, and a fail-open outage, while sessions are live: slots
are asserted again, used tokens stay used, one session id is never on two sockets, and the outage is
logged once (issue 23, item 9). The shared Redis is never restarted or flushed: each test has its own
``redis-server`` (``RedisProcess``)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from streamer.edge.handshake import SERVICES
from streamer.guards.tokens import TokenService
from streamer.protocol import SessionConfig
from streamer.state.backend import MemoryBackend
from streamer.state.redis_backend import RedisBackend

from .conftest import RedisProcess, post_session

pytestmark = pytest.mark.redis


async def _server(make_server: Any, vad: Any, redis_process: RedisProcess) -> TestServer:
    await redis_process.start()
    # "free": one concurrent session per key, so a slot that is not counted shows
    settings = make_settings(redis_url=redis_process.url, redis_policy="fail_open", api_key_tier="free")
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=vad)
    return server


def _ws_url(server: TestServer, token: str) -> str:
    return base_url(server).replace("http", "ws", 1) + f"/v1/stream?token={token}"


async def _created(ws: aiohttp.ClientWebSocketResponse) -> None:
    message = await ws.receive_json(timeout=10)
    assert message["type"] == "session.created", message


async def _restart(redis_process: RedisProcess) -> None:
    redis_process.stop()
    await redis_process.start()  # empty: no persistence


async def test_live_sessions_slots_are_asserted_again_after_a_restart(
    make_server: Any, vad: Any, redis_process: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streamer.session.run.SLOT_TTL_S", 1.5)  # refreshed every 0.5 s
    server = await _server(make_server, vad, redis_process)
    base = base_url(server)
    observer = RedisBackend(redis_process.url)
    try:
        async with aiohttp.ClientSession() as http:
            status, body, _ = await post_session(http, base, API_KEY)
            assert status == 201, body
            key_id = jwt.decode(body["token"], options={"verify_signature": False})["kid"]
            async with http.ws_connect(_ws_url(server, body["token"])) as live:
                await _created(live)
                await _restart(redis_process)
                deadline = time.monotonic() + 10
                while await observer.active_sessions(key_id) != 1:
                    assert time.monotonic() < deadline, "the live session's slot was never added again"
                    await asyncio.sleep(0.1)
                status, body, _ = await post_session(http, base, API_KEY)
                assert (status, body["error"]["code"]) == (429, "concurrent_sessions_exceeded")
    finally:
        await observer.close()


async def test_a_used_token_stays_used_after_a_restart(
    make_server: Any, vad: Any, redis_process: RedisProcess
) -> None:
    server = await _server(make_server, vad, redis_process)
    async with aiohttp.ClientSession() as http:
        status, body, _ = await post_session(http, base_url(server), API_KEY)
        assert status == 201, body
        async with http.ws_connect(_ws_url(server, body["token"])) as ws:
            await _created(ws)
            await ws.send_json({"type": "session.close"})
            async with asyncio.timeout(10):
                async for _ in ws:
                    pass  # to the end: the session is over, nothing holds its id
        await _restart(redis_process)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with http.ws_connect(_ws_url(server, body["token"])):
                pass
        assert refused.value.status == 401


async def test_a_forgetful_backend_cannot_make_a_token_new_again() -> None:
    tokens = TokenService("s" * 32, ttl_s=60)
    token, _ = tokens.issue(tokens.new_session_id(), "key", SessionConfig())
    await tokens.redeem(token, MemoryBackend().consume_jti)
    with pytest.raises(Exception, match="already used"):
        await tokens.redeem(token, MemoryBackend().consume_jti)  # a fresh backend: it never saw the token


async def test_during_a_fail_open_outage_one_token_opens_one_socket(
    make_server: Any, vad: Any, redis_process: RedisProcess
) -> None:
    server = await _server(make_server, vad, redis_process)
    async with aiohttp.ClientSession() as http:
        redis_process.stop()
        status, body, _ = await post_session(http, base_url(server), API_KEY)
        assert status == 201, body  # failing open
        async with http.ws_connect(_ws_url(server, body["token"])) as first:
            await _created(first)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(_ws_url(server, body["token"])):
                    pass
            assert refused.value.status == 401


async def test_an_outage_is_logged_once_and_its_end_once(
    make_server: Any, vad: Any, redis_process: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    server = await _server(make_server, vad, redis_process)
    base = base_url(server)
    caplog.set_level(logging.WARNING, logger="streamer.state.guarded")

    def lines(text: str) -> int:
        logged = [r for r in caplog.records if r.name == "streamer.state.guarded"]
        return len([r for r in logged if text in r.getMessage()])

    async with aiohttp.ClientSession() as http:
        redis_process.stop()
        assert [(await post_session(http, base, API_KEY))[0] for _ in range(5)] == [201] * 5
        assert lines("state backend unavailable") == 1
        await redis_process.start()
        deadline = time.monotonic() + 10
        while lines("reachable again") == 0:  # the breaker lets a call through again, and it succeeds
            assert time.monotonic() < deadline, "the recovery was never logged"
            await post_session(http, base, API_KEY)
            await asyncio.sleep(0.1)
        await post_session(http, base, API_KEY)
        assert (lines("state backend unavailable"), lines("reachable again")) == (1, 1)


async def test_one_session_id_is_never_carried_by_two_sockets(
    make_server: Any, vad: Any, redis_process: RedisProcess
) -> None:
    server = await _server(make_server, vad, redis_process)
    services = server.app[SERVICES]
    async with aiohttp.ClientSession() as http:
        status, body, _ = await post_session(http, base_url(server), API_KEY)
        assert status == 201, body
        async with http.ws_connect(_ws_url(server, body["token"])) as first:
            await _created(first)
            # a second valid token for the same session (as a forgetful shared state could let through)
            key_id = jwt.decode(body["token"], options={"verify_signature": False})["kid"]
            second, _ = services.tokens.issue(body["session_id"], key_id, SessionConfig())
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(_ws_url(server, second)):
                    pass
            assert refused.value.status == 401
            gauge = services.metrics.active_sessions.collect()[0].samples[0].value
            assert gauge == 1
