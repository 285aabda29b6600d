"""Diarization's availability: the speaker worker starts with the server when the encoder's weights are
there, and asking for ``diarize`` without them is a clear config error, never a crash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from unittest.mock import patch

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings, skip_or_fail

from streamer.app import create_app
from streamer.edge.handshake import SERVICES
from streamer.errors import ConfigError
from streamer.pipeline.speakers import GE2E
from streamer.pipeline.speakers_campplus import CAMPLUS
from streamer.pipeline.speakers_weights import default_campplus_path, default_wheel_path

ServerFactory = Callable[..., Awaitable[TestServer]]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def _create(server: TestServer, config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/sessions", json=config, headers=AUTH) as r:
            return r.status, await r.json()


async def test_without_weights_diarize_is_refused_as_a_config_error(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(speaker_weights="off"), asr_engine=FakeAsr())
    assert server.app[SERVICES].speakers is None
    status, body = await _create(server, {"diarize": True})
    assert status == 400
    assert body["error"]["code"] == "invalid_config"
    assert "diarize" in body["error"]["message"]
    status, _ = await _create(server, {"diarize": False})  # the rest of the server is unaffected
    assert status == 201


async def test_with_weights_the_worker_runs_and_diarize_is_accepted(make_server: ServerFactory) -> None:
    if not default_wheel_path().is_file():
        skip_or_fail("the speaker encoder's weights are not in the cache (run scripts/setup.sh)")
    server = await make_server(asr_engine=FakeAsr())
    worker = server.app[SERVICES].speakers
    assert worker is not None and worker.pending == 0
    status, body = await _create(server, {"diarize": True})
    assert status == 201, body


async def test_weights_named_but_unreadable_stop_the_start(tmp_path: Any) -> None:
    bogus = tmp_path / "Resemblyzer-0.1.4-py3-none-any.whl"
    bogus.write_bytes(b"not a wheel")
    server = TestServer(create_app(make_settings(speaker_weights=str(bogus)), asr_engine=FakeAsr()))
    with pytest.raises(ConfigError, match="STREAMER_SPEAKER_WEIGHTS"):
        await server.start_server()
    await server.close()


async def test_ge2e_by_default_and_campplus_when_asked_for(make_server: ServerFactory) -> None:
    if not (default_campplus_path().is_file() and default_wheel_path().is_file()):
        skip_or_fail("the speaker encoders' weights are not in the cache (run scripts/setup.sh)")
    default = await make_server(asr_engine=FakeAsr())
    worker = default.app[SERVICES].speakers
    assert worker is not None and worker.kind is GE2E
    campplus = await make_server(make_settings(speaker_encoder="campplus"), asr_engine=FakeAsr())
    worker = campplus.app[SERVICES].speakers
    assert worker is not None and worker.kind is CAMPLUS
    status, body = await _create(campplus, {"diarize": True})
    assert status == 201, body


async def test_an_encoder_asked_for_without_its_weights_stops_the_start(tmp_path: Any) -> None:
    settings = make_settings(speaker_encoder="campplus")
    with patch.dict("os.environ", {"XDG_CACHE_HOME": str(tmp_path)}):
        server = TestServer(create_app(settings, asr_engine=FakeAsr()))
        with pytest.raises(ConfigError, match=r"STREAMER_SPEAKER_ENCODER=campplus.*scripts/setup\.sh"):
            await server.start_server()
    await server.close()
