"""What the server tells strangers: no versions, no exception names; what browsers are told: a CSP that
lets the page talk to this server only, and the microphone for this origin only."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad

from streamer.edge.handshake import content_security_policy
from streamer.state.backend import BackendUnavailableError, MemoryBackend

from .conftest import hostile_settings, start_session


class UnreachableBackend(MemoryBackend):
    async def ping(self) -> None:
        raise BackendUnavailableError("ConnectionRefusedError to 10.0.0.5:6379")


async def test_readyz_and_the_server_header_name_nothing_internal(make_server: Any) -> None:
    server: TestServer = await make_server(
        hostile_settings(), asr_engine=FakeAsr(), vad=EnergyVad(), backend=UnreachableBackend()
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/readyz")) as r:
            text = await r.text()
            assert r.status == 503 and (await r.json())["checks"]["state_backend"] == "unreachable"
            assert "Error" not in text and "10.0.0.5" not in text
        session = await start_session(http, server)
        ws = await http.ws_connect(server.make_url(f"/v1/stream?token={session['token']}"))
        upgrade_headers = ws._response.headers
        await ws.close()
        responses = [upgrade_headers]
        for path in ("/healthz", "/", "/web/streamer-client.js", "/no/such/route"):
            async with http.get(server.make_url(path)) as r:
                responses.append(r.headers)
    for headers in responses:
        assert headers["Server"] == "streamer", headers
        assert "X-Content-Type-Options" in headers, headers


async def test_the_demo_page_may_use_the_microphone_and_talk_to_this_server_only(make_server: Any) -> None:
    server: TestServer = await make_server(hostile_settings(), asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/")) as r:
            assert r.status == 200
            csp = r.headers["Content-Security-Policy"]
            assert r.headers["Permissions-Policy"].startswith("microphone=(self)")
    connect = next(part for part in csp.split(";") if part.strip().startswith("connect-src")).split()
    assert connect == ["connect-src", "'self'"], csp


def test_a_public_url_is_the_one_other_socket_origin() -> None:
    csp = content_security_policy("https://speech.example.com/base")
    assert "connect-src 'self' wss://speech.example.com;" in csp
