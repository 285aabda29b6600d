"""``STREAMER_ALLOWED_ORIGINS='*'`` opens CORS (reading REST answers), not the WebSocket or the demo route
(acting as the visitor): those keep their own allowlist, which never holds ``*``."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad
from pydantic import ValidationError

from streamer.config import Settings

from .conftest import hostile_settings, start_session

EVIL = "https://evil.example"
APP = "https://app.example"


async def _upgrade(http: aiohttp.ClientSession, server: TestServer, origin: str) -> int:
    token = (await start_session(http, server))["token"]
    try:
        ws = await http.ws_connect(server.make_url(f"/v1/stream?token={token}"), headers={"Origin": origin})
    except aiohttp.WSServerHandshakeError as e:
        return e.status
    await ws.close()
    return 101


async def test_a_cors_wildcard_does_not_open_the_socket_or_the_demo(make_server: Any) -> None:
    settings = hostile_settings(allowed_origins=("*",), demo=True)
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
        async with http.options(server.make_url("/v1/sessions"), headers=preflight) as r:
            assert r.status == 200  # CORS: any site may read answers, as configured
        assert await _upgrade(http, server, EVIL) == 403
        async with http.post(server.make_url("/v1/demo/session"), headers={"Origin": EVIL}) as r:
            assert r.status == 403


async def test_the_socket_allowlist_is_its_own(make_server: Any) -> None:
    settings = hostile_settings(allowed_origins=("*",), socket_origins=(APP,))
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        assert await _upgrade(http, server, APP) == 101
        assert await _upgrade(http, server, EVIL) == 403


def test_listed_cors_origins_still_open_the_socket_and_a_wildcard_cannot() -> None:
    assert Settings(allowed_origins=(APP, "*")).websocket_origins == (APP,)
    with pytest.raises(ValidationError, match="every site"):
        Settings(socket_origins=("*",))
