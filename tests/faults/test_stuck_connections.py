"""A connection whose model failed must end completely: session gone, key's slot back, instance ready.

Issue 22, D1: a hung model failed the first final while the reader waited for room in the session's
finals queue (more utterances than it holds), holding the session's event lock; the client heard
``model_unavailable`` and 1013, but the handler never returned, so the session stayed counted by
admission and the key's concurrent slot stayed taken until restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from faults.streams import CHUNK, eventually, of_type, utterance
from streamer.app import create_app
from streamer.client import StreamerClient
from streamer.config import Settings
from streamer.edge.handshake import REGISTRY, SERVICES
from streamer.pipeline.vad import SileroVad

UTTERANCES = 6  # one more than the finals queue (4) and the emitter's own hold: the reader must wait


class ProductionServer(TestServer):
    """Served as ``streamer serve`` serves (``listen.start``): a client that goes away does not cancel its
    handler. (aiohttp's TestServer cancels it, which would hide a handler that never returns.)"""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs["handler_cancellation"] = False
        return web.AppRunner(self.app, **kwargs)


@pytest.fixture
async def serve(silero: SileroVad) -> AsyncIterator[Callable[[Settings, FakeAsr], Awaitable[TestServer]]]:
    servers: list[TestServer] = []

    async def start(settings: Settings, asr: FakeAsr) -> TestServer:
        server = ProductionServer(create_app(settings, asr_engine=asr, vad=silero))
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def _ready(server: TestServer) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url(server)}/readyz") as r:
            return r.status


async def _active(server: TestServer) -> int:
    services = server.app[SERVICES]
    return await services.backend.active_sessions(services.keys.records[0].key_id)


async def until(read: Callable[[], Awaitable[object]], want: object, what: str) -> None:
    """Poll ``read`` (an HTTP or backend answer) until it gives ``want``, for at most 5 s."""
    got = None
    for _ in range(100):
        if (got := await read()) == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: still {got!r}")


async def test_a_model_failure_behind_a_full_finals_queue_releases_the_session(
    serve: Callable[[Settings, FakeAsr], Awaitable[TestServer]],
) -> None:
    asr = FakeAsr(hang=True)  # a hung model, cut off by the batcher's watchdog
    # a breaker that stays closed: readiness then depends on the model thread and the sessions alone;
    # room for one session, so one stuck session would refuse every other
    settings = make_settings(model_timeout_s=2.0, breaker_threshold=100, max_sessions=1)
    server = await serve(settings, asr)
    registry = server.app[REGISTRY]
    try:
        async with StreamerClient(base_url(server), api_key=API_KEY) as client:
            stream = await client.connect({"language": "en"})
            async with stream:
                events: list[dict[str, Any]] = []

                async def read() -> None:
                    while (event := await stream.receive()) is not None:
                        events.append(event)

                reader = asyncio.create_task(read())
                pcm = utterance(lead_s=0.1, tail_s=0.8) * UTTERANCES
                try:
                    for i in range(0, len(pcm), CHUNK):  # a burst, as fast as the server takes it
                        await stream.ws.send_bytes(pcm[i : i + CHUNK])
                except ConnectionError:
                    pass  # the server closed first: fine
                async with asyncio.timeout(10):
                    await reader
                assert [e["code"] for e in of_type(events, "error")] == ["model_unavailable"], events
                assert stream.close_code == 1013
        asr.hang = False
        asr.release()  # the model thread comes back; nothing of the failed session may remain
        await eventually(lambda: not registry.sessions and not registry.parked, "the session to go", 5)
        await eventually(lambda: not registry.connections, "the connection to go", 5)
        await until(lambda: _active(server), 0, "the key's concurrent-session slot to be released")
        await until(lambda: _ready(server), 200, "/readyz to say ready")
        # the instance admits sessions again (a stuck one kept it answering 503 to everyone)
        async with StreamerClient(base_url(server), api_key=API_KEY) as client:
            await client.create_session()
    finally:
        asr.release()
