"""Slow headers, slow bodies, connection floods and malformed requests against ``streamer serve``'s own
listener (streamer/listen.py), with short limits so every test is over in a couple of seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fakes import FakeAsr
from limits.conftest import ADMIN, EnergyVad, free_port

from streamer.app import create_app
from streamer.config import Settings
from streamer.edge.handshake import SECURITY_HEADERS
from streamer.listen import Phase, RequestWatch, start

from .conftest import AUTH, hostile_settings

TIMEOUT_S = 0.5
Listener = Callable[..., Awaitable[tuple[str, int]]]


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    runners: list[web.AppRunner] = []

    async def make(**overrides: Any) -> tuple[str, int]:
        base: dict[str, Any] = {"port": 0, "header_timeout_s": TIMEOUT_S, "body_timeout_s": TIMEOUT_S}
        settings = hostile_settings(**{**base, **overrides})
        runner, sites = await start(create_app(settings, asr_engine=FakeAsr(), vad=EnergyVad()), settings)
        runners.append(runner)
        return "127.0.0.1", sites[0].bound_port

    yield make
    for runner in runners:
        await runner.cleanup()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Read until the server closes the connection; how long that took (fails past ``seconds``)."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while True:
            try:
                if not await reader.read(4096):
                    break
            except ConnectionError:
                break
    return time.monotonic() - started


async def test_a_slow_header_is_cut_off(listener: Listener) -> None:
    host, port = await listener()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        for _ in range(50):  # a byte every 0.1 s: progress, but never a whole head
            await asyncio.sleep(0.1)
            writer.write(b"X")

    dripping = asyncio.create_task(trickle())
    try:
        assert await closed_within(reader, TIMEOUT_S + 2.0) >= TIMEOUT_S * 0.8
    finally:
        dripping.cancel()
        writer.close()


async def test_a_silent_connection_and_a_slow_body_are_cut_off(listener: Listener) -> None:
    host, port = await listener()
    silent_reader, silent = await asyncio.open_connection(host, port)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + AUTH["Authorization"].encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    await closed_within(silent_reader, TIMEOUT_S + 2.0)
    await closed_within(reader, TIMEOUT_S + 2.0)
    silent.close()
    writer.close()


async def test_requests_and_websockets_that_keep_up_are_not_cut(listener: Listener) -> None:
    host, port = await listener()
    base = f"http://{host}:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # keep-alive: several requests on one connection, across the head timeout
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            await asyncio.sleep(TIMEOUT_S / 2)
        async with http.post(f"{base}/v1/sessions", json={}, headers=AUTH) as r:
            token = (await r.json())["token"]
        ws = await http.ws_connect(f"{base}/v1/stream?token={token}")
        assert (await ws.receive_json(timeout=5.0))["type"] == "session.created"
        await asyncio.sleep(TIMEOUT_S * 3)  # after the upgrade, only the session's own limits apply
        await ws.send_json({"type": "ping", "id": 1})
        assert await ws.receive_json(timeout=5.0) == {"type": "pong", "id": 1}
        await ws.close()


async def test_connections_per_address_are_limited(listener: Listener) -> None:
    host, port = await listener(max_connections_per_address=3, header_timeout_s=10.0)
    held = [await asyncio.open_connection(host, port) for _ in range(3)]
    reader, writer = await asyncio.open_connection(host, port)
    assert await closed_within(reader, 2.0) < 1.0  # refused at once, not after a timeout
    writer.close()
    held[0][1].close()
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection(host, port)  # a slot was given back
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await reader.read(1024)).startswith(b"HTTP/1.1 200")
    writer.close()
    for _, w in held[1:]:
        w.close()


async def test_malformed_requests_log_one_line_and_echo_nothing(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = await listener()
    caplog.set_level(logging.DEBUG)
    bodies = []
    for n in range(15):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: evil{n}<script>\r\n\r\n".encode())
        bodies.append(await reader.read(65536))
        writer.close()
    for raw in bodies:
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request"), raw
        assert b"evil" not in raw and b"<script>" not in raw
        assert b'"code":"bad_request"' in body.replace(b" ", b"")
        for name in SECURITY_HEADERS:
            assert name.lower().encode() in head.lower(), (name, head)
    mine = [r for r in caplog.records if "malformed" in r.getMessage() or r.name == "aiohttp.server"]
    assert not [r for r in mine if r.exc_info or r.levelno >= logging.ERROR], mine
    assert len([r for r in mine if r.levelno >= logging.WARNING]) == 1, [r.getMessage() for r in mine]


async def test_the_admin_api_can_have_a_listener_of_its_own(listener: Listener) -> None:
    admin_port = free_port()
    host, port = await listener(admin_port=admin_port)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{host}:{port}/v1/admin/keys", headers=ADMIN) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "admin_disabled"
        async with http.get(f"http://127.0.0.1:{admin_port}/v1/admin/keys", headers=ADMIN) as r:
            assert r.status == 200, await r.text()


def test_the_request_watch_follows_heads_bodies_and_upgrades() -> None:
    watch = RequestWatch()
    assert watch.phase is Phase.HEAD
    watch.feed(b"POST /x HTTP/1.1\r\nContent-Length: 5\r")
    assert watch.phase is Phase.HEAD
    watch.feed(b"\n\r\nab")
    assert watch.phase is Phase.BODY
    watch.feed(b"cdeGET / HTTP/1.1\r\n")  # the body ends; the next (pipelined) head begins
    assert watch.phase is Phase.HEAD
    watch.feed(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r")
    assert watch.phase is Phase.CHUNKED
    watch.feed(b"\n\r\n")
    assert watch.phase is Phase.IDLE
    watch.feed(b"GET /v1/stream HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x85")
    assert watch.phase is Phase.UPGRADED


def test_settings_have_the_connection_limits() -> None:
    s = Settings()
    assert (s.header_timeout_s, s.body_timeout_s, s.max_connections_per_address) == (10.0, 30.0, 64)
