"""A temporary credential opens what it was minted for and nothing else, and only while its key is valid
(issue 23, item 10). Credentials come from the official SDKs against a real local server."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import ADMIN, EnergyVad, create_key, post_session
from openai import AsyncOpenAI
from support import API_KEY, base_url

from .conftest import hostile_settings

with warnings.catch_warnings():
    # deepgram-sdk imports websockets' legacy client, which websockets deprecates
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)
    from deepgram import AsyncDeepgramClient
    from deepgram.core.api_error import ApiError
    from deepgram.environment import DeepgramClientEnvironment

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")
TRANSCRIPTION = {"intent": "transcription"}


def _ws(server: TestServer) -> str:
    return base_url(server).replace("http", "ws", 1)


def _openai(server: TestServer, api_key: str = API_KEY) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=api_key, base_url=f"{base_url(server)}/v1", websocket_base_url=f"{_ws(server)}/v1"
    )


@asynccontextmanager
async def _deepgram(server: TestServer, **credentials: str) -> AsyncIterator[AsyncDeepgramClient]:
    base, ws = base_url(server), _ws(server)
    environment = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    async with httpx.AsyncClient() as http:
        yield AsyncDeepgramClient(environment=environment, httpx_client=http, **credentials)


async def _server(make_server: Any) -> TestServer:
    server: TestServer = await make_server(hostile_settings(), asr_engine=FakeAsr(), vad=EnergyVad())
    return server


async def test_an_openai_client_secret_does_not_open_deepgram_listen(make_server: Any) -> None:
    server = await _server(make_server)
    async with _openai(server) as client:
        secret = await client.realtime.client_secrets.create(session={"type": "transcription"})
    assert secret.value.startswith("ek_")
    async with _deepgram(server, access_token=secret.value.removeprefix("ek_")) as deepgram:
        with pytest.raises(ApiError) as refused:
            async with deepgram.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000):
                pass
    assert refused.value.status_code == 401
    # the secret was not spent by the refusal: it still opens the session it was made for
    async with _openai(server, secret.value) as ephemeral:
        async with ephemeral.realtime.connect(extra_query=TRANSCRIPTION) as connection:
            assert (await connection.recv()).type == "session.created"


async def test_a_deepgram_grant_does_not_open_openai_realtime(make_server: Any) -> None:
    server = await _server(make_server)
    async with _deepgram(server, api_key=API_KEY) as deepgram:
        granted = await deepgram.auth.v1.tokens.grant(ttl_seconds=30)
    async with _openai(server, "ek_" + granted.access_token) as impostor:
        with pytest.raises(Exception, match="401"):
            async with impostor.realtime.connect(extra_query=TRANSCRIPTION) as connection:
                await connection.recv()


async def test_an_unused_session_token_dies_with_its_key(make_server: Any) -> None:
    server = await _server(make_server)
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        made = await create_key(http, base)
        status, body, _ = await post_session(http, base, made["key"])
        assert status == 201, body
        async with http.delete(f"{base}/v1/admin/keys/{made['key_id']}", headers=ADMIN) as r:
            assert r.status == 204
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with http.ws_connect(f"{_ws(server)}/v1/stream?token={body['token']}"):
                pass
        assert refused.value.status == 401
        # a token of a key still valid opens its session as before
        status, body, _ = await post_session(http, base, API_KEY)
        async with http.ws_connect(f"{_ws(server)}/v1/stream?token={body['token']}") as ws:
            ready = await ws.receive_json(timeout=10)
            assert ready["type"] == "session.created", ready
