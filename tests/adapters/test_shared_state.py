"""With Redis, the adapters' temporary credentials are single use across instances, and their sessions run
with the shared state (durable write-through) like any other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, make_settings

from .conftest import http_base, ws_base

pytestmark = pytest.mark.redis

ServerFactory = Callable[..., Awaitable[TestServer]]
LISTEN = "/v1/listen?encoding=linear16&sample_rate=16000"


async def test_a_temporary_token_opens_one_session_in_the_whole_fleet(
    make_server: ServerFactory, redis_url: str
) -> None:
    a = await make_server(make_settings(redis_url=redis_url), asr_engine=FakeAsr())
    b = await make_server(make_settings(redis_url=redis_url), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{http_base(a)}/v1/auth/grant", headers={"Authorization": f"Token {API_KEY}"}
        ) as response:
            token = (await response.json())["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        async with http.ws_connect(ws_base(b) + LISTEN, headers=bearer) as ws:
            await ws.send_bytes(bytes(3200))
            await ws.send_str(json.dumps({"type": "CloseStream"}))
            async with asyncio.timeout(10):
                frames = [json.loads(m.data) async for m in ws]
            assert frames[-1]["type"] == "Metadata" and ws.close_code == 1000
        for server in (a, b):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(ws_base(server) + LISTEN, headers=bearer)
            assert refused.value.status == 401
        async with http.post(
            f"{http_base(a)}/v1/realtime/client_secrets",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json={"session": {"type": "transcription"}},
        ) as response:
            secret = (await response.json())["value"]
        protocols = ("realtime", f"openai-insecure-api-key.{secret}")
        async with http.ws_connect(ws_base(b) + "/v1/realtime", protocols=protocols) as ws:
            assert json.loads((await ws.receive()).data)["type"] == "session.created"
        with pytest.raises(aiohttp.WSServerHandshakeError) as again:
            await http.ws_connect(ws_base(a) + "/v1/realtime", protocols=protocols)
        assert again.value.status == 401
