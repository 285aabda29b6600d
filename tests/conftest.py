"""Shared fixtures: real servers on port 0, the real tiny.en model loaded once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from support import API_KEY, ServerFactory, base_url, make_settings, require_redis

from streamer.app import create_app, load_asr_engine
from streamer.client import StreamerClient
from streamer.config import Settings
from streamer.pipeline.asr import AsrEngine
from streamer.pipeline.vad import SileroVad


@pytest.fixture(scope="session")
def tiny_engine() -> AsrEngine:
    return load_asr_engine(Settings(asr_model="tiny.en", device="cpu"))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis (``STREAMER_TEST_REDIS_URL``, default local): skips locally, fails in CI if down."""
    url = os.environ.get("STREAMER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    require_redis(url)
    return url


@pytest.fixture(scope="session")
def silero() -> SileroVad:
    return SileroVad()


@pytest.fixture
async def make_server(tiny_engine: AsrEngine, silero: SileroVad) -> AsyncIterator[ServerFactory]:
    """Start real servers on port 0 (the real model unless ``asr_engine=`` is given)."""
    servers: list[TestServer] = []

    async def factory(settings: Settings | None = None, **inject: Any) -> TestServer:
        inject.setdefault("asr_engine", tiny_engine)
        inject.setdefault("vad", silero)
        app = create_app(settings or make_settings(), **inject)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.close()


@pytest.fixture
async def server(make_server: ServerFactory) -> TestServer:
    return await make_server()


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[StreamerClient]:
    async with StreamerClient(base_url(server), api_key=API_KEY) as c:
        yield c
