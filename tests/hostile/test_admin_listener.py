"""The admin API's own listener is the operator's way in while the public side is under attack: it has its
own connection budget and its own failed-authentication throttle, and it is told apart from the public
listener by the listener, not by a port number (issue 23, item 8). Against ``streamer serve``'s real
listeners (``streamer/listen.py``) on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fakes import FakeAsr
from limits.conftest import ADMIN, EnergyVad, free_port

from streamer.app import create_app
from streamer.listen import GuardedSite, start

from .conftest import hostile_settings
from .test_key_guessing import WRONG

Serve = Callable[..., Awaitable[list[GuardedSite]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def make(**overrides: Any) -> list[GuardedSite]:
        settings = hostile_settings(**{"port": 0, "admin_port": free_port(), **overrides})
        runner, sites = await start(create_app(settings, asr_engine=FakeAsr(), vad=EnergyVad()), settings)
        runners.append(runner)
        return sites

    yield make
    for runner in runners:
        await runner.cleanup()


async def _status(http: aiohttp.ClientSession, url: str, headers: dict[str, str], method: str = "GET") -> int:
    async with http.request(method, url, headers=headers) as r:
        await r.read()
        return r.status


async def test_connections_held_on_the_public_listener_leave_the_admin_listener_open(serve: Serve) -> None:
    public, admin = await serve(max_connections_per_address=2, header_timeout_s=30.0)
    held = [await asyncio.open_connection("127.0.0.1", public.bound_port) for _ in range(2)]
    try:
        # the public budget is spent: a third connection is closed at once
        reader, writer = await asyncio.open_connection("127.0.0.1", public.bound_port)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{admin.bound_port}/v1/admin/keys"
            assert await _status(http, url, ADMIN) == 200
    finally:
        for _, w in held:
            w.close()


async def test_guesses_on_the_public_listener_do_not_lock_the_operator_out(serve: Serve) -> None:
    public, admin = await serve(auth_failures_per_min=3.0)
    public_url = f"http://127.0.0.1:{public.bound_port}/v1/sessions"
    admin_url = f"http://127.0.0.1:{admin.bound_port}/v1/admin/keys"
    async with aiohttp.ClientSession() as http:
        assert [await _status(http, public_url, WRONG, "POST") for _ in range(4)] == [401, 401, 401, 429]
        assert await _status(http, admin_url, ADMIN) == 200
        # the admin listener throttles guesses of the admin key all the same, on its own account
        wrong_admin = {"Authorization": "Bearer " + "w" * 40}
        assert [await _status(http, admin_url, wrong_admin) for _ in range(4)] == [401, 401, 401, 429]


async def test_a_public_listener_on_the_admin_port_of_another_address_serves_no_admin_api(
    serve: Serve,
) -> None:
    port = free_port()
    # the same port number on two loopback addresses: only the listener tells them apart
    sites = await serve(host="127.0.0.2", port=port, admin_host="127.0.0.1", admin_port=port)
    assert [site.bound_port for site in sites] == [port, port]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.2:{port}/v1/admin/keys", headers=ADMIN) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "admin_disabled"
        assert await _status(http, f"http://127.0.0.1:{port}/v1/admin/keys", ADMIN) == 200
