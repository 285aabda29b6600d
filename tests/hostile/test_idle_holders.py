"""Idle holders: a socket that sends nothing must not keep its slot until ``max_session_s`` (an hour)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import eventually
from limits.conftest import EnergyVad

from streamer.edge.handshake import REGISTRY

from .conftest import hostile_settings, start_session

IDLE_S = 0.6


async def test_a_silent_session_is_closed_with_a_clear_error(make_server: Any) -> None:
    server: TestServer = await make_server(
        hostile_settings(idle_timeout_s=IDLE_S), asr_engine=FakeAsr(), vad=EnergyVad()
    )
    async with aiohttp.ClientSession() as http:
        session = await start_session(http, server)
        ws = await http.ws_connect(server.make_url(f"/v1/stream?token={session['token']}"))
        created = await ws.receive_json(timeout=5.0)
        assert created["type"] == "session.created"
        events = []
        async with asyncio.timeout(IDLE_S + 5.0):
            while (msg := await ws.receive()).type == WSMsgType.TEXT:
                events.append(msg.json())
        assert msg.type == WSMsgType.CLOSE and msg.data == 1008, msg
        errors = [e for e in events if e["type"] == "error"]
        assert [e["code"] for e in errors] == ["session_idle"], events
        assert events[-1]["type"] == "session.closed" and events[-1]["reason"] == "session_idle"
    # the slot is given back, not parked for a resume
    registry = server.app[REGISTRY]
    await eventually(lambda: not registry.sessions and not registry.parked, "the idle session to be released")


async def test_a_client_that_pings_is_not_idle(make_server: Any) -> None:
    server: TestServer = await make_server(
        hostile_settings(idle_timeout_s=IDLE_S), asr_engine=FakeAsr(), vad=EnergyVad()
    )
    async with aiohttp.ClientSession() as http:
        session = await start_session(http, server)
        ws = await http.ws_connect(server.make_url(f"/v1/stream?token={session['token']}"))
        assert (await ws.receive_json(timeout=5.0))["type"] == "session.created"
        for n in range(8):  # 1.6 s, well past the idle timeout, with a message every 0.2 s
            await ws.send_json({"type": "ping", "id": n})
            assert await ws.receive_json(timeout=5.0) == {"type": "pong", "id": n}
            await asyncio.sleep(IDLE_S / 3)
        await ws.close()


async def test_a_client_that_sends_websocket_pings_is_not_idle(make_server: Any) -> None:
    """A native client's keep-alive is often the WebSocket's own ping frame, not a protocol message."""
    server: TestServer = await make_server(
        hostile_settings(idle_timeout_s=IDLE_S), asr_engine=FakeAsr(), vad=EnergyVad()
    )
    async with aiohttp.ClientSession() as http:
        session = await start_session(http, server)
        ws = await http.ws_connect(
            server.make_url(f"/v1/stream?token={session['token']}"), autoping=False, heartbeat=None
        )
        assert (await ws.receive_json(timeout=5.0))["type"] == "session.created"
        for n in range(8):  # 1.6 s, well past the idle timeout, a ping frame every 0.2 s, each answered
            await ws.ping(b"%d" % n)
            answer = await ws.receive(timeout=5.0)
            assert answer.type == WSMsgType.PONG and answer.data == b"%d" % n, answer
            await asyncio.sleep(IDLE_S / 3)
        assert not ws.closed
        await ws.close()


async def test_websocket_pings_count_against_the_message_rate(make_server: Any) -> None:
    """Answering a ping costs the server: a flood of them is refused like a flood of messages."""
    server: TestServer = await make_server(
        hostile_settings(max_messages_per_s=5.0, message_burst=5), asr_engine=FakeAsr(), vad=EnergyVad()
    )
    async with aiohttp.ClientSession() as http:
        session = await start_session(http, server)
        ws = await http.ws_connect(
            server.make_url(f"/v1/stream?token={session['token']}"), autoping=False, heartbeat=None
        )
        assert (await ws.receive_json(timeout=5.0))["type"] == "session.created"
        for n in range(20):
            await ws.ping(b"%d" % n)
        codes = []
        async with asyncio.timeout(5.0):
            while (msg := await ws.receive()).type in (WSMsgType.PONG, WSMsgType.TEXT):
                if msg.type == WSMsgType.TEXT and msg.json()["type"] == "error":
                    codes.append(msg.json()["code"])
                if len(codes) >= 1:
                    break
        assert codes == ["message_rate_exceeded"]
        await ws.close()
