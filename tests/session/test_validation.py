"""One edge validation for every surface: origins compared as browsers send them, one config check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import next_event
from support import API_KEY, base_url, make_settings

from streamer.client import StreamerClient
from streamer.session.validation import normalize_origin, origin_allowed

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        ("https://app.example.com", ("https://App.example.com/",), True),
        ("https://APP.example.com", ("https://app.example.com",), True),
        ("https://evil.example.com", ("https://app.example.com",), False),
        ("http://localhost:8080", (), True),  # the server's own page (Host localhost:8080)
        ("https://anything.example", ("*",), True),
    ],
)
def test_origins_are_compared_normalized(origin: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert origin_allowed(origin, allowed, "localhost:8080") is ok


def test_normalize_origin() -> None:
    assert normalize_origin(" https://App.Example.com/ ") == "https://app.example.com"
    assert normalize_origin("*") == "*"


async def test_an_origin_listed_with_capitals_and_a_slash_may_open_the_socket(
    make_server: ServerFactory,
) -> None:
    """``STREAMER_ALLOWED_ORIGINS=https://App.example.com/`` passed CORS, then got 403 on the WebSocket."""
    server = await make_server(
        make_settings(allowed_origins=("https://App.example.com/",)), asr_engine=FakeAsr()
    )
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        info = await client.create_session({"language": "en"})
        assert client.http is not None
        url = f"{client.ws_url(info)}?token={info.token}"
        async with client.http.ws_connect(url, headers={"Origin": "https://app.example.com"}) as ws:
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.TEXT and '"session.created"' in msg.data
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            info = await client.create_session({"language": "en"})
            url = f"{client.ws_url(info)}?token={info.token}"
            await client.http.ws_connect(url, headers={"Origin": "https://evil.example.com"})
        assert refused.value.status == 403


async def test_session_update_is_checked_like_a_new_session(make_server: ServerFactory) -> None:
    """A language the model lacks is refused at POST /v1/sessions; ``session.update`` used to accept it."""
    server = await make_server(asr_engine=FakeAsr())  # FakeAsr knows English only
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        async with stream:
            await stream.update(language="de")
            error = await next_event(stream, "error")
            assert error["code"] == "invalid_config" and "'de'" in error["message"]
            await stream.send_json({"type": "ping", "id": "still-there"})
            assert (await next_event(stream, "pong"))["id"] == "still-there"
