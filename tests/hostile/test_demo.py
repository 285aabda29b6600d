"""Spoofed demo starts: the keyless demo route is opt-in, and anonymous sessions have caps of their own.

Any client can send ``Origin`` equal to the ``Host`` it sends, or ``Sec-Fetch-Site: same-origin``: those
headers are not credentials. What must hold is that anonymous sessions cannot take the capacity paying
keys need: at most ``demo_max_sessions`` of them, a daily audio cap, a short duration and idle timeout,
and a start rate per client address that a forged ``X-Forwarded-For`` does not reset.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad, frames, tone

from streamer.config import Settings
from streamer.config_env import load_settings
from streamer.errors import ConfigError

from .conftest import AUTH, hostile_settings

SPOOFED = {"Host": "demo.example", "Origin": "http://demo.example"}  # curl can say anything
FETCH_SITE = {"Sec-Fetch-Site": "same-origin"}


async def demo_start(http: aiohttp.ClientSession, server: TestServer, **headers: str) -> tuple[int, Any]:
    async with http.post(server.make_url("/v1/demo/session"), headers={**SPOOFED, **headers}) as r:
        return r.status, await r.json()


def test_demo_mode_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(host="127.0.0.1").demo_enabled is False  # loopback behind a proxy is the usual case
    monkeypatch.setenv("STREAMER_DEMO", "auto")
    with pytest.raises(ConfigError, match="STREAMER_DEMO"):
        load_settings()
    monkeypatch.setenv("STREAMER_DEMO", "true")
    assert load_settings().demo_enabled is True


async def test_demo_sessions_cannot_take_the_keys_capacity(make_server: Any) -> None:
    settings = hostile_settings(demo=True, max_sessions=3, demo_max_sessions=2, demo_sessions_per_min=60)
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        held = []
        for headers in (SPOOFED, FETCH_SITE, SPOOFED):
            status, body = await demo_start(http, server, **headers)
            held.append((status, body))
        assert [s for s, _ in held] == [201, 201, 429], held
        assert held[2][1]["error"]["code"] == "concurrent_sessions_exceeded"
        sockets = []
        for _, body in held[:2]:  # two idle anonymous sockets
            ws = await http.ws_connect(server.make_url(f"/v1/stream?token={body['token']}"))
            created = await ws.receive_json(timeout=5.0)
            assert created["limits"]["max_session_s"] == settings.demo_max_session_s
            sockets.append(ws)
        # a paying key still gets in
        async with http.post(server.make_url("/v1/sessions"), json={}, headers=AUTH) as r:
            assert r.status == 201, await r.json()
        for ws in sockets:
            await ws.close()


async def test_the_demo_rate_is_per_client_address_and_not_reset_by_forwarded_headers(
    make_server: Any,
) -> None:
    settings = hostile_settings(demo=True, demo_sessions_per_min=2, demo_max_sessions=50)
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        statuses = [
            (await demo_start(http, server, **{"X-Forwarded-For": f"198.51.100.{n}"}))[0] for n in range(4)
        ]
    assert statuses == [201, 201, 429, 429]


async def test_a_trusted_proxy_gives_each_client_its_own_demo_rate(make_server: Any) -> None:
    settings = hostile_settings(
        demo=True, demo_sessions_per_min=1, demo_max_sessions=50, trusted_proxies=("127.0.0.1",)
    )
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        # the proxy appends the address it saw; whatever the client put before it is its own claim
        alice = {"X-Forwarded-For": "203.0.113.9, 192.0.2.1"}
        bob = {"X-Forwarded-For": "192.0.2.2"}
        assert (await demo_start(http, server, **alice))[0] == 201
        assert (await demo_start(http, server, **alice))[0] == 429
        assert (await demo_start(http, server, **{"X-Forwarded-For": "10.9.9.9, 192.0.2.1"}))[0] == 429
        assert (await demo_start(http, server, **bob))[0] == 201


async def test_demo_sessions_have_their_own_idle_timeout_and_daily_audio(make_server: Any) -> None:
    settings = hostile_settings(demo=True, demo_idle_timeout_s=0.5, demo_audio_s_per_day=2.0)
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        _, idle = await demo_start(http, server)
        _, talker = await demo_start(http, server)
        ws = await http.ws_connect(server.make_url(f"/v1/stream?token={idle['token']}"))
        codes = []
        async with asyncio.timeout(5.0):
            while (msg := await ws.receive()).type == WSMsgType.TEXT:
                codes.append(msg.json().get("code"))
        assert "session_idle" in codes and msg.data == 1008, (codes, msg)

        ws = await http.ws_connect(server.make_url(f"/v1/stream?token={talker['token']}"))
        for frame in frames(tone(3.0)):
            if ws.closed:
                break
            await ws.send_bytes(frame)
        codes = []
        async with asyncio.timeout(5.0):
            while (msg := await ws.receive()).type == WSMsgType.TEXT:
                codes.append(msg.json().get("code"))
        assert "audio_quota_exceeded" in codes and msg.data == 1008, (codes, msg)
