"""A bug while handling a message is reported as the contract's internal error (1011), not a bare close."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url

from streamer.client import StreamerClient
from streamer.edge.handshake import REGISTRY


async def test_unexpected_exception_closes_with_1011_after_an_error_event(make_server: Any) -> None:
    server: TestServer = await make_server(asr_engine=FakeAsr())
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({})
        session = server.app[REGISTRY].sessions[stream.info.session_id]

        async def broken(frame: bytes) -> None:
            raise RuntimeError("a bug")

        session.push_audio = broken  # type: ignore[method-assign]
        async with stream:
            await stream.ws.send_bytes(b"\x00\x00" * 1600)
            events = []
            while (event := await stream.receive(timeout=10)) is not None:
                events.append(event)
    errors = [e for e in events if e["type"] == "error"]
    assert errors == [
        {"type": "error", "code": "internal_error", "message": "internal server error", "retryable": False}
    ]
    assert events[-1]["type"] == "session.closed" and events[-1]["reason"] == "internal_error"
    assert stream.close_code == 1011
    assert "a bug" not in str(events)  # no internals leak to the client
