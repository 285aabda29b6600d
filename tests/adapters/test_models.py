"""``GET /v1/models`` in OpenAI's list shape, read by the official ``openai`` SDK (``client.models``), and
protocol v1's description of the loaded models at its new path, ``GET /v1/stream/models``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from openai import AsyncOpenAI
from support import API_KEY

from .conftest import http_base

ServerFactory = Callable[..., Awaitable[TestServer]]


def _client(server: TestServer) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=API_KEY, base_url=f"{http_base(server)}/v1", max_retries=0)


async def test_the_sdk_lists_and_retrieves_the_models(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    async with _client(server) as client:
        page = await client.models.list()
        ids = [m.id async for m in page]
        one = await client.models.retrieve("whisper-1")
        own = await client.models.retrieve("fake")
    assert ids[0] == "fake"  # the server's own model first, then the OpenAI names it answers to
    assert {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"} <= set(ids)
    assert (one.id, one.object, own.id) == ("whisper-1", "model", "fake")
    assert one.owned_by == "streamer" and one.created > 0


async def test_an_unknown_model_is_openais_404(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    async with _client(server) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.models.retrieve("gpt-5")
    assert caught.value.code == "model_not_found"
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "model" and body["type"] == "invalid_request_error"


async def test_protocol_v1s_description_moved_and_the_list_keeps_it(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{http_base(server)}/v1/stream/models") as r:
            assert r.status == 200
            described = await r.json()
        async with http.get(f"{http_base(server)}/v1/models") as r:
            listed = await r.json()
    assert described == {
        "asr": {"name": "fake", "multilingual": False, "languages": ["en"], "tasks": ["transcribe"]},
        "mt": None,
    }
    # deprecated in the list, kept until protocol v1 clients have moved to /v1/stream/models
    assert {"asr": listed["asr"], "mt": listed["mt"]} == described
