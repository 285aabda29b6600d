"""The hostile-client suite's server: real aiohttp on port 0, a fake model, the energy VAD, and the
server's own default limits (not the generous ones other tests use to stream fast)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from support import API_KEY, make_settings

from streamer.config import Settings

from . import rawws

AUTH = {"Authorization": f"Bearer {API_KEY}"}
HERE = Path(__file__).parent


def hostile_settings(**overrides: Any) -> Settings:
    """Test settings with the production message and audio rate limits put back."""
    defaults = Settings()
    base: dict[str, Any] = {
        "max_realtime_factor": defaults.max_realtime_factor,
        "realtime_burst_s": defaults.realtime_burst_s,
        "max_messages_per_s": defaults.max_messages_per_s,
        "message_burst": defaults.message_burst,
    }
    base.update(overrides)
    return make_settings(**base)


def address(server: TestServer) -> tuple[str, int]:
    assert server.port is not None
    return server.host, server.port


async def start_session(http: aiohttp.ClientSession, server: TestServer) -> dict[str, Any]:
    async with http.post(server.make_url("/v1/sessions"), json={}, headers=AUTH) as r:
        body: dict[str, Any] = await r.json()
        assert r.status == 201, body
    return body


async def healthz_seconds(http: aiohttp.ClientSession, server: TestServer) -> float:
    """How long ``/healthz`` takes to answer now."""
    started = time.perf_counter()
    async with http.get(server.make_url("/healthz")) as r:
        assert r.status == 200
        await r.read()
    return time.perf_counter() - started


class RawSockets:
    """Opens raw WebSockets to a server and closes whatever is left open at the end of the test."""

    def __init__(self) -> None:
        self.opened: list[rawws.RawSocket] = []

    async def open(self, server: TestServer, token: str, *, offer_deflate: bool = False) -> rawws.RawSocket:
        host, port = address(server)
        sock = await rawws.connect(host, port, f"/v1/stream?token={token}", offer_deflate=offer_deflate)
        self.opened.append(sock)
        return sock


@pytest.fixture
async def raw_sockets() -> AsyncIterator[RawSockets]:
    sockets = RawSockets()
    yield sockets
    for sock in sockets.opened:
        await sock.close()


# the suite runs in CI beside the fuzzers: every test here is short, and a hang must name its test quickly
HOSTILE_TIMEOUT_S = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(HOSTILE_TIMEOUT_S))
