"""Frames that cost the server more than they cost the client: compressed floods, oversized text, long
ping ids. The event loop serves every session on the instance, so ``/healthz`` must stay quick."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad

from streamer.edge.ws import WS_MAX_MSG

from . import rawws
from .conftest import RawSockets, healthz_seconds, hostile_settings, start_session

# the reproduction: 100 pings of ~4 KiB on the wire, 4 MiB each once inflated
FLOOD = 100
INFLATED = (4 << 20) - 64
HEALTHZ_BOUND_S = 0.3


async def _open(
    make_server: Any, raw_sockets: RawSockets, *, offer_deflate: bool = False
) -> tuple[rawws.RawSocket, TestServer]:
    server: TestServer = await make_server(hostile_settings(), asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        session = await start_session(http, server)
    sock = await raw_sockets.open(server, session["token"], offer_deflate=offer_deflate)
    created = await sock.read_json()
    assert created["type"] == "session.created"
    return sock, server


async def test_a_compressed_flood_does_not_stall_the_loop(make_server: Any, raw_sockets: RawSockets) -> None:
    sock, server = await _open(make_server, raw_sockets, offer_deflate=True)
    assert not sock.deflate_accepted, "permessage-deflate lets 4 KiB on the wire cost 4 MiB of CPU"
    one = rawws.frame(rawws.OP_TEXT, rawws.inflating_ping(INFLATED), compressed=True)
    assert len(one) < 8 << 10
    # refused early or not, the point is what it did to everyone else
    with contextlib.suppress(ConnectionError):
        await sock.send(one * FLOOD)
    async with aiohttp.ClientSession() as http:
        worst = max([await healthz_seconds(http, server) for _ in range(5)])
    assert worst < HEALTHZ_BOUND_S, f"/healthz took {worst:.2f}s during a compressed flood"


async def test_long_text_is_refused_before_parsing(make_server: Any, raw_sockets: RawSockets) -> None:
    sock, _ = await _open(make_server, raw_sockets)
    big = json.dumps({"type": "ping", "id": "x" * 60_000}).encode()
    assert len(big) < WS_MAX_MSG  # under the socket's limit: the text limit must answer
    await sock.send(rawws.frame(rawws.OP_TEXT, big))
    error = await sock.read_json()
    assert error["type"] == "error" and error["code"] == "bad_request", error
    assert "too large" in error["message"]
    # the session goes on
    await sock.send(rawws.frame(rawws.OP_TEXT, b'{"type": "ping", "id": 7}'))
    assert await sock.read_json() == {"type": "pong", "id": 7}


async def test_ping_ids_are_bounded(make_server: Any, raw_sockets: RawSockets) -> None:
    sock, _ = await _open(make_server, raw_sockets)
    for bad in ("y" * 65, 10**30):
        await sock.send(rawws.frame(rawws.OP_TEXT, json.dumps({"type": "ping", "id": bad}).encode()))
        error = await sock.read_json()
        assert error["type"] == "error" and error["code"] == "bad_request", error
    await sock.send(rawws.frame(rawws.OP_TEXT, json.dumps({"type": "ping", "id": "z" * 64}).encode()))
    assert await sock.read_json() == {"type": "pong", "id": "z" * 64}


async def test_the_socket_limit_fits_the_largest_legal_frame_and_little_more() -> None:
    largest_legal = 48000 * 2  # one second of 48 kHz PCM16
    assert largest_legal <= WS_MAX_MSG <= 4 * largest_legal
