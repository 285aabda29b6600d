"""A client that stops reading cannot make the server buffer for it: it is cut off and forgotten.

The client asks for a lot (thousands of pings with the longest id the protocol allows) and never reads,
with a small receive buffer so the server's socket fills quickly. The server's outbox is bounded
(``session_out_queue``), its writer gives up after ``send_timeout_s`` without progress, and the session is
closed and removed; the owed pongs (far more than the bound) are never materialized.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from faults.streams import eventually
from streamer.edge.handshake import REGISTRY

ServerFactory = Callable[..., Awaitable[TestServer]]
PING_ID = "x" * 64  # the longest id allowed (tests/hostile: a long one is refused)
PONG_BYTES = 100
PINGS = 100_000  # 10 MB of pongs owed, far more than the small receive buffer below takes
# aiohttp's WebSocket writer drains past 64 KiB; the transport may hold a couple of those: a bound far
# under the 10 MB owed
WRITE_BUFFER_BOUND = 256 << 10


def small_receive_buffer(addr_info: Any) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


@pytest.mark.timeout(60)
async def test_a_client_that_stops_reading_is_cut_off_and_removed(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        session_out_queue=8, send_timeout_s=0.5, max_messages_per_s=1e6, message_burst=1e6
    )
    server = await make_server(settings, asr_engine=FakeAsr())
    services = server.app[REGISTRY]
    url = base_url(server)
    process = psutil.Process()
    ping = json.dumps({"type": "ping", "id": PING_ID})
    connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{url}/v1/sessions", headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            info = await r.json()
        ws = await http.ws_connect(f"{url.replace('http', 'ws', 1)}/v1/stream?token={info['token']}")
        session_id = info["session_id"]
        connection = services.connections[session_id]
        transport = connection.ws._req.transport  # type: ignore[union-attr]
        assert transport is not None
        rss_before = process.memory_info().rss
        peak = {"rss": 0, "queued": 0, "write_buffer": 0}
        full_at: list[float] = []  # when the outbox first filled: the writer has stopped getting through

        async def flood() -> None:
            # blocks once the server stops reading (its outbox is full): that is the backpressure
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                for _ in range(PINGS):
                    await ws.send_str(ping)

        async def watch() -> None:
            while True:
                peak["rss"] = max(peak["rss"], process.memory_info().rss - rss_before)
                peak["queued"] = max(peak["queued"], queued := connection.outbox._queue.qsize())
                if queued >= settings.session_out_queue and not full_at:
                    full_at.append(time.monotonic())
                peak["write_buffer"] = max(peak["write_buffer"], transport.get_write_buffer_size())
                await asyncio.sleep(0.01)

        flooder = asyncio.create_task(flood())
        watcher = asyncio.create_task(watch())
        try:
            # How long the server reads before its writer stalls depends on the kernel's buffers, not on
            # the server: a kernel that grows a socket's receive buffer to 32 MiB (tcp_rmem) takes the
            # whole flood in, and the pongs then fill the send side at the speed the server handles pings.
            # The bound is on what follows the stall: cut off within the send timeout (and some slack).
            await eventually(
                lambda: session_id not in services.connections and session_id not in services.sessions,
                "the server to cut the client off and remove its session",
                timeout=40,
            )
            assert full_at, "the outbox never filled: the client was cut off for something else"
            cut_after = time.monotonic() - full_at[0]
            assert cut_after < settings.send_timeout_s + 5, f"cut off {cut_after:.2f}s after the stall"
        finally:
            watcher.cancel()
            flooder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flooder
        print(f"\ncut off {cut_after:.2f}s after the outbox filled; peaks {peak}")
        # bounded: the outbox holds at most its 8 messages, the socket's write buffer about one message;
        # the process (client included) grew by far less than it was asked for
        assert peak["queued"] <= settings.session_out_queue
        assert peak["write_buffer"] <= WRITE_BUFFER_BOUND
        assert peak["rss"] < 40 << 20
        assert any(
            "stopped reading" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
        )

        # reading again now: whatever the socket held, then the end of the connection (1008, or a reset
        # if the close frame could not be written to a peer that was not reading)
        async with asyncio.timeout(10):
            while (msg := await ws.receive()).type == WSMsgType.TEXT:
                assert json.loads(msg.data)["type"] in ("session.created", "pong")
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR), msg
        if msg.type == WSMsgType.CLOSE:
            assert msg.data == 1008
        await ws.close()
    await eventually(lambda: not services.sessions and not services.connections, "the server to be empty")
