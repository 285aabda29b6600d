"""Uploads are admitted before their body is read and hold what a socket holds while they run (issue 23
items 2 and 5, issue 22 D4): a refused upload costs no body, a key's uploads in progress are capped, its
concurrent-session slot is kept alive for as long as its upload runs and given back however it ends."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import eventually
from limits.conftest import EnergyVad
from support import API_KEY, make_settings

from streamer.adapters import upload_runner
from streamer.app import create_app
from streamer.edge.handshake import REGISTRY, SERVICES
from streamer.guards.keys import issue_key

from .conftest import http_base
from .uploads import SLOW, WatchedBackend, answer_before_the_body, serving, wav

ServerFactory = Callable[..., Awaitable[TestServer]]
BEARER = {"Authorization": f"Bearer {API_KEY}"}
URL = "/v1/audio/transcriptions"


def _form(body: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", io.BytesIO(body), filename="a.wav")
    return form


async def _post(
    http: aiohttp.ClientSession, server: TestServer, body: bytes, key: str = API_KEY, **fields: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(http_base(server) + URL, data=_form(body, **fields), headers=headers) as r:
        return r.status, json.loads(await r.text() or "null")


async def _answer_before_the_body(server: TestServer, key: str = API_KEY) -> tuple[int, dict[str, Any]]:
    """Send a request that promises 10 MB of body and delivers a few bytes: the answer must come anyway."""
    boundary = "b0undary"
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {10 << 20}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
    )
    status, _, body = await answer_before_the_body(server, head, b"")
    return status, body


async def test_a_key_without_a_free_slot_is_refused_before_its_body_is_read(
    make_server: ServerFactory,
) -> None:
    server = await make_server(make_settings(api_key_tier="free"), asr_engine=FakeAsr())  # 1 session per key
    async with aiohttp.ClientSession() as http:
        held = await http.ws_connect(
            f"ws://{server.host}:{server.port}/v1/realtime?intent=transcription", headers=BEARER
        )
        assert json.loads((await held.receive()).data)["type"] == "session.created"
        status, body = await _answer_before_the_body(server)
        await held.close()
    assert status == 429, body
    assert body["error"]["code"] == "concurrent_sessions_exceeded"


async def test_a_key_out_of_audio_is_refused_before_its_body_is_read(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    services = server.app[SERVICES]
    full_key, record = issue_key("quota", audio_seconds_per_day=5.0)
    await services.backend.put_key(record)
    await services.backend.charge_audio(record.key_id, 5.0, 5.0)
    status, body = await _answer_before_the_body(server, full_key)
    assert status == 429, body
    assert body["error"]["code"] == "audio_quota_exceeded"


async def test_decoding_stops_at_the_audio_the_key_has_left(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    services = server.app[SERVICES]
    full_key, record = issue_key("quota", audio_seconds_per_day=5.0)
    await services.backend.put_key(record)
    await services.backend.charge_audio(record.key_id, 2.0, 5.0)
    async with aiohttp.ClientSession() as http:
        status, body = await _post(http, server, wav(20.0), full_key)
    assert status == 429, body
    assert body["error"]["code"] == "audio_quota_exceeded"
    assert "3 s left" in body["error"]["message"]
    await eventually(lambda: not server.app[REGISTRY].sessions, "the upload's session to be released")
    assert await services.backend.audio_used(record.key_id) <= 5.0 + 1e-6


async def _upload_in_progress(
    http: aiohttp.ClientSession, server: TestServer, seconds: float = 60.0
) -> asyncio.Task[tuple[int, Any]]:
    """An upload paced slowly enough (the test's settings) to still be running when the test looks."""
    registry = server.app[REGISTRY]
    task = asyncio.create_task(_post(http, server, wav(seconds)))
    await eventually(lambda: len(registry.sessions) == 1 or task.done(), "the upload to be admitted")
    assert not task.done(), task.result()
    return task


async def test_a_key_may_have_only_so_many_uploads_in_progress(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(uploads_per_key=1, **SLOW), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        first = await _upload_in_progress(http, server)
        async with asyncio.timeout(5):
            status, body = await _post(http, server, wav(1.0))
        assert status == 429, body
        assert body["error"]["code"] == "concurrent_uploads_exceeded"
        first.cancel()  # the client goes away: its upload stops and gives its slot back
        await asyncio.wait({first})
    registry = server.app[REGISTRY]
    await eventually(lambda: not registry.sessions, "the abandoned upload to stop")


async def test_an_uploads_slot_lives_as_long_as_the_upload(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_runner, "SLOT_REFRESH_S", 0.05)  # the backend's clock runs 1000x faster
    backend = WatchedBackend()
    settings = make_settings(api_key_tier="free", **SLOW)  # one session per key
    server = await make_server(settings, asr_engine=FakeAsr(), backend=backend)
    async with aiohttp.ClientSession() as http:
        upload = await _upload_in_progress(http, server)
        for _ in range(3):  # 150 s on the backend's clock: a slot reserved once lasts 90
            backend.refreshing.clear()
            backend.now += 50.0
            async with asyncio.timeout(5):
                await backend.refreshing.wait()
        async with http.post(http_base(server) + "/v1/sessions", json={}, headers=BEARER) as r:
            assert r.status == 429, await r.text()
            assert (await r.json())["error"]["code"] == "concurrent_sessions_exceeded"
        upload.cancel()
        await asyncio.wait({upload})
    await eventually(lambda: not server.app[REGISTRY].sessions, "the abandoned upload to stop")


@pytest.fixture
async def failing_stream_server() -> AsyncIterator[TestServer]:
    """A server whose event-stream responses fail to start (the client vanished as they began)."""
    app = create_app(make_settings(api_key_tier="free"), asr_engine=FakeAsr(), vad=EnergyVad())

    async def vanish(request: Any, response: Any) -> None:
        if response.content_type == "text/event-stream":
            raise ConnectionResetError("the client is gone")

    app.on_response_prepare.append(vanish)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


async def test_a_stream_that_fails_to_start_gives_its_slot_back(failing_stream_server: TestServer) -> None:
    server = failing_stream_server
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):  # the answer breaks off: the connection is cut
            await _post(http, server, wav(1.0), stream="true")
    async with aiohttp.ClientSession() as http:
        # the key's one slot is free again at once (not after its 90 s expiry)
        status, body = await _post(http, server, wav(1.0))
    assert status == 200, body
    registry = server.app[REGISTRY]
    await eventually(lambda: not registry.sessions and not registry.parked, "the sessions to be released")


async def test_shutdown_stops_an_upload_with_a_retryable_503(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(**SLOW), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        # a minute of audio at 1x: it would outlast the drain
        upload = await _upload_in_progress(http, server)
        closing = asyncio.create_task(server.close())
        async with asyncio.timeout(10):
            status, body = await upload
        await closing
    assert status == 503, body
    assert body["error"]["code"] == "overloaded" and body["error"]["type"] == "server_error"


async def test_an_upload_stops_when_its_client_leaves(caplog: pytest.LogCaptureFixture) -> None:
    """As ``streamer serve`` runs it: aiohttp does not cancel a handler whose client left (TestServer
    does), so the upload must notice by itself, or it would run on, paced, holding its slot."""
    caplog.set_level(logging.INFO, logger="streamer.adapters.transcriptions")
    async with serving(make_settings(**SLOW)) as (app, base):
        registry = app[REGISTRY]
        async with aiohttp.ClientSession() as http:
            form = _form(wav(60.0))
            posting = asyncio.create_task(http.post(base + URL, data=form, headers=BEARER))
            await eventually(lambda: len(registry.sessions) == 1, "the upload to be admitted")
            posting.cancel()
            await asyncio.wait({posting})
        await eventually(lambda: not registry.sessions, "the upload to notice its client left")
        assert "the client left; its upload stopped" in caplog.text
