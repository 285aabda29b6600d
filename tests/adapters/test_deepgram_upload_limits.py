"""Deepgram pre-recorded ``POST /v1/listen`` has an upload's defences (issue 22 item 5, issue 23 items 1, 2
and 5): it is refused before its body is read when the key has no free slot or no audio left, a key's
uploads in progress are capped across both upload surfaces, its audio is paced and stops at the quota
left, every channel's slot is kept alive while it runs, it stops when its client leaves, and shutdown
ends it with a retryable 503, every refusal in Deepgram's error shape."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import eventually
from support import API_KEY, make_settings

from streamer.adapters import upload_runner
from streamer.edge.handshake import REGISTRY, SERVICES
from streamer.guards.keys import issue_key

from .conftest import http_base
from .uploads import SLOW, WatchedBackend, answer_before_the_body, serving, wav

ServerFactory = Callable[..., Awaitable[TestServer]]
URL = "/v1/listen"
DEEPGRAM_ERROR = {"err_code", "err_msg", "request_id"}


async def _post(
    http: aiohttp.ClientSession, server: TestServer, body: bytes, key: str = API_KEY
) -> tuple[int, Any]:
    headers = {"Authorization": f"Token {key}", "Content-Type": "audio/wav"}
    async with http.post(http_base(server) + URL, data=io.BytesIO(body), headers=headers) as r:
        return r.status, json.loads(await r.text() or "null")


async def _answer_before_the_body(server: TestServer, key: str = API_KEY) -> tuple[int, dict[str, Any]]:
    """Promise 10 MB of body and deliver a WAV header: the answer must come anyway, without the body."""
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: test\r\nAuthorization: Token {key}\r\n"
        f"Content-Type: audio/wav\r\nContent-Length: {10 << 20}\r\n\r\n"
    )
    status, headers, body = await answer_before_the_body(server, head, wav(0.1)[:44])
    assert "retry-after" in headers and headers.get("dg-request-id"), headers
    return status, body


async def _upload_in_progress(
    http: aiohttp.ClientSession, server: TestServer, post: Callable[[], Awaitable[tuple[int, Any]]]
) -> asyncio.Task[tuple[int, Any]]:
    registry = server.app[REGISTRY]
    task = asyncio.create_task(post())
    await eventually(lambda: len(registry.sessions) == 1 or task.done(), "the upload to be admitted")
    assert not task.done(), task.result()
    return task


async def test_a_key_without_a_free_slot_is_refused_before_its_body_is_read(
    make_server: ServerFactory,
) -> None:
    server = await make_server(make_settings(api_key_tier="free"), asr_engine=FakeAsr())  # 1 session per key
    async with aiohttp.ClientSession() as http:
        bearer = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(http_base(server) + "/v1/sessions", json={}, headers=bearer) as r:
            assert r.status == 201, await r.text()  # the key's one slot, reserved for the token
    status, body = await _answer_before_the_body(server)
    assert status == 429 and set(body) == DEEPGRAM_ERROR, body
    assert body["err_code"] == "TOO_MANY_REQUESTS" and "concurrent" in body["err_msg"], body


async def _key_with_audio_used(server: TestServer, used_s: float) -> tuple[str, str]:
    """A new key with 5 s of audio a day, ``used_s`` of them used: the key and its id."""
    backend = server.app[SERVICES].backend
    full_key, record = issue_key("quota", max_sessions=2, audio_seconds_per_day=5.0)
    await backend.put_key(record)
    if used_s:
        await backend.charge_audio(record.key_id, used_s, 5.0)
    return full_key, record.key_id


async def test_a_key_out_of_audio_is_refused_before_its_body_is_read(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    full_key, _ = await _key_with_audio_used(server, 5.0)
    status, body = await _answer_before_the_body(server, full_key)
    assert status == 429 and set(body) == DEEPGRAM_ERROR, body
    assert body["err_code"] == "TOO_MANY_REQUESTS" and "quota" in body["err_msg"], body


async def test_decoding_stops_at_the_audio_the_key_has_left(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    full_key, key_id = await _key_with_audio_used(server, 2.0)
    async with aiohttp.ClientSession() as http:
        status, body = await _post(http, server, wav(20.0), full_key)
    assert status == 429, body
    assert body["err_code"] == "TOO_MANY_REQUESTS" and "3 s left" in body["err_msg"], body
    await eventually(lambda: not server.app[REGISTRY].sessions, "the upload's session to be released")
    assert await server.app[SERVICES].backend.audio_used(key_id) <= 5.0 + 1e-6


async def test_a_keys_uploads_in_progress_are_capped_across_both_surfaces(
    make_server: ServerFactory,
) -> None:
    server = await make_server(make_settings(uploads_per_key=1, **SLOW), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        first = await _upload_in_progress(http, server, lambda: _post(http, server, wav(60.0)))
        async with asyncio.timeout(5):
            status, body = await _post(http, server, wav(1.0))
        assert status == 429, body
        assert body["err_code"] == "TOO_MANY_REQUESTS" and "uploads in progress" in body["err_msg"]
        # an OpenAI upload from the same key counts against the same limit
        form = aiohttp.FormData()
        form.add_field("model", "whisper-1")
        form.add_field("file", io.BytesIO(wav(1.0)), filename="a.wav")
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(http_base(server) + "/v1/audio/transcriptions", data=form, headers=headers) as r:
            assert r.status == 429
            assert (await r.json())["error"]["code"] == "concurrent_uploads_exceeded"
        first.cancel()  # the client goes away: its upload stops and gives its slot back
        await asyncio.wait({first})
    await eventually(lambda: not server.app[REGISTRY].sessions, "the abandoned upload to stop")


async def test_shutdown_stops_an_upload_with_a_retryable_503(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(**SLOW), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        upload = await _upload_in_progress(http, server, lambda: _post(http, server, wav(60.0)))
        closing = asyncio.create_task(server.close())
        async with asyncio.timeout(10):
            status, body = await upload
        await closing
    assert status == 503, body
    assert set(body) == DEEPGRAM_ERROR and "shutting down" in body["err_msg"], body


def _stereo(seconds: float) -> bytes:
    return bytes(int(seconds * 16000) * 4)  # linear16, two channels


async def test_every_channels_slot_lives_as_long_as_the_upload(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_runner, "SLOT_REFRESH_S", 0.05)  # the backend's clock runs 1000x faster
    backend = WatchedBackend()
    server = await make_server(make_settings(**SLOW), asr_engine=FakeAsr(), backend=backend)
    full_key, record = issue_key("two", max_sessions=2)
    await backend.put_key(record)
    registry = server.app[REGISTRY]
    query = "?encoding=linear16&sample_rate=16000&channels=2&multichannel=true"
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Token {full_key}", "Content-Type": "audio/l16"}

        async def post() -> tuple[int, Any]:
            url = http_base(server) + URL + query
            async with http.post(url, data=io.BytesIO(_stereo(60.0)), headers=headers) as r:
                return r.status, await r.json()

        upload = asyncio.create_task(post())
        await eventually(lambda: len(registry.sessions) == 2 or upload.done(), "both channels' sessions")
        assert not upload.done(), upload.result()
        channels = {session.session_id for session in registry.sessions.values()}
        for _ in range(3):  # 150 s on the backend's clock: a slot reserved once lasts 90
            backend.refreshing.clear()
            backend.now += 50.0
            async with asyncio.timeout(5):
                await backend.refreshing.wait()
        await eventually(lambda: channels <= backend.refreshed, "every channel's slot to be refreshed")
        # both slots still held: the key has no room for a third session
        bearer = {"Authorization": f"Bearer {full_key}"}
        async with http.post(http_base(server) + "/v1/sessions", json={}, headers=bearer) as r:
            assert r.status == 429, await r.text()
        upload.cancel()
        await asyncio.wait({upload})
    await eventually(lambda: not registry.sessions, "the abandoned upload to stop")
    assert await backend.active_sessions(record.key_id) == 0


async def test_an_upload_stops_when_its_client_leaves(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamer.adapters.deepgram.rest")
    async with serving(make_settings(**SLOW)) as (app, base), aiohttp.ClientSession() as http:
        registry = app[REGISTRY]
        headers = {"Authorization": f"Token {API_KEY}", "Content-Type": "audio/wav"}
        posting = asyncio.create_task(http.post(base + URL, data=io.BytesIO(wav(60.0)), headers=headers))
        await eventually(lambda: len(registry.sessions) == 1, "the upload to be admitted")
        posting.cancel()
        await asyncio.wait({posting})
        await eventually(lambda: not registry.sessions, "the upload to notice its client left")
    assert "the client left; its upload stopped" in caplog.text


async def test_the_quota_cap_counts_every_channel(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    full_key, key_id = await _key_with_audio_used(server, 0.0)
    query = "?encoding=linear16&sample_rate=16000&channels=2&multichannel=true"
    headers = {"Authorization": f"Token {full_key}", "Content-Type": "audio/l16"}
    async with aiohttp.ClientSession() as http:  # 4 s of stereo: 8 s of the key's 5
        async with http.post(
            http_base(server) + URL + query, data=io.BytesIO(_stereo(4.0)), headers=headers
        ) as r:
            status, body = r.status, await r.json()
    assert status == 429 and body["err_code"] == "TOO_MANY_REQUESTS", body
    assert "5 s left" in body["err_msg"], body
    await eventually(lambda: not server.app[REGISTRY].sessions, "the upload's sessions to be released")
    assert await server.app[SERVICES].backend.audio_used(key_id) <= 5.0 + 1e-6
