"""Session tokens stay out of URLs: proxies and servers log request lines, not subprotocol headers."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad
from support import API_KEY, base_url

from streamer.app import create_app
from streamer.client import StreamerClient

from .conftest import hostile_settings


async def test_the_python_client_sends_tokens_in_the_subprotocol() -> None:
    seen: list[str] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == "/v1/stream":
            seen.append(request.path_qs)

    app = create_app(hostile_settings(), asr_engine=FakeAsr(), vad=EnergyVad())
    app.on_response_prepare.append(record)
    server = TestServer(app)
    await server.start_server()
    try:
        async with StreamerClient(base_url(server), api_key=API_KEY) as client:
            stream = await client.connect()
            await stream.ws.close()  # a drop: the session is parked for a resume
            resumed = await client.resume(stream)
            assert resumed.created is not None and resumed.created["resumed"] is True
            await resumed.ws.close()
    finally:
        await server.close()
    assert len(seen) == 2, seen  # the first connection and the resume
    assert not [qs for qs in seen if "token=" in qs], seen
