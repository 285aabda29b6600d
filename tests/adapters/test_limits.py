"""The limits of protocol v1 hold on every vendor surface: the key's concurrent sessions, the model's
breaker, server shutdown. Each refusal in the vendor's own shape."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import wave
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, make_settings

from streamer.edge.handshake import SERVICES
from streamer.guards.keys import issue_key

from .conftest import http_base, ws_base

ServerFactory = Callable[..., Awaitable[TestServer]]
DEEPGRAM = "/v1/listen?encoding=linear16&sample_rate=16000"
OPENAI = "/v1/realtime?intent=transcription"


def _wav(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(int(seconds * 16000) * 2))
    return out.getvalue()


async def _refusals(server: TestServer, http: aiohttp.ClientSession) -> dict[str, tuple[int, Any]]:
    """Status and body of a new session on each surface."""
    out: dict[str, tuple[int, Any]] = {}
    with pytest.raises(aiohttp.WSServerHandshakeError) as dg:
        await http.ws_connect(ws_base(server) + DEEPGRAM, headers={"Authorization": f"Token {API_KEY}"})
    async with http.get(
        http_base(server) + DEEPGRAM,
        headers={"Authorization": f"Token {API_KEY}", "Connection": "Upgrade", "Upgrade": "websocket"},
    ) as response:
        out["deepgram"] = (dg.value.status, await response.json())
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as oa:
        await http.ws_connect(ws_base(server) + OPENAI, headers=bearer)
    async with http.get(
        http_base(server) + OPENAI, headers={**bearer, "Connection": "Upgrade", "Upgrade": "websocket"}
    ) as response:
        out["openai"] = (oa.value.status, await response.json())
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", _wav(), filename="a.wav")
    async with http.post(
        http_base(server) + "/v1/audio/transcriptions", data=form, headers=bearer
    ) as response:
        out["transcriptions"] = (response.status, await response.json())
    return out


async def test_a_key_with_one_session_gets_one_on_any_surface(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(api_key_tier="free"), asr_engine=FakeAsr())  # 1 session per key
    async with aiohttp.ClientSession() as http:
        held = await http.ws_connect(ws_base(server) + OPENAI, headers={"Authorization": f"Bearer {API_KEY}"})
        assert json.loads((await held.receive()).data)["type"] == "session.created"
        refused = await _refusals(server, http)
        assert refused["deepgram"][0] == 429 and refused["deepgram"][1]["err_code"] == "TOO_MANY_REQUESTS"
        assert refused["openai"][0] == 429
        assert refused["openai"][1]["error"]["type"] == "rate_limit_error"
        assert refused["openai"][1]["error"]["code"] == "concurrent_sessions_exceeded"
        assert refused["transcriptions"][0] == 429
        await held.close()
        # the slot is given back when the socket closes
        async with asyncio.timeout(10):
            while True:
                form = aiohttp.FormData()
                form.add_field("model", "whisper-1")
                form.add_field("file", _wav(), filename="a.wav")
                async with http.post(
                    http_base(server) + "/v1/audio/transcriptions",
                    data=form,
                    headers={"Authorization": f"Bearer {API_KEY}"},
                ) as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.05)


async def test_an_open_model_breaker_refuses_new_sessions_everywhere(make_server: ServerFactory) -> None:
    settings = make_settings()
    server = await make_server(settings, asr_engine=FakeAsr())
    breaker = server.app[SERVICES].breakers["asr"]
    for _ in range(settings.breaker_threshold):
        breaker.record_failure()
    async with aiohttp.ClientSession() as http:
        refused = await _refusals(server, http)
    assert {status for status, _ in refused.values()} == {503}
    assert refused["openai"][1]["error"]["type"] == "server_error"
    assert refused["deepgram"][1]["err_code"] == "MODEL_UNAVAILABLE"


async def test_shutdown_finishes_vendor_sessions_and_closes_with_1001(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr(text="hello there"))
    async with aiohttp.ClientSession() as http:
        dg = await http.ws_connect(ws_base(server) + DEEPGRAM, headers={"Authorization": f"Token {API_KEY}"})
        oa = await http.ws_connect(ws_base(server) + OPENAI, headers={"Authorization": f"Bearer {API_KEY}"})
        await oa.receive()  # session.created
        await dg.send_bytes(bytes(3200))
        audio = base64.b64encode(bytes(4800)).decode()
        await oa.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        closing = asyncio.create_task(server.close())
        async with asyncio.timeout(15):
            dg_frames = [m async for m in dg]
            oa_frames = [m async for m in oa]
        await closing
    assert dg.close_code == 1001 and oa.close_code == 1001
    assert json.loads(dg_frames[-1].data)["type"] == "Metadata"
    assert all(json.loads(m.data)["type"] != "error" for m in oa_frames)


async def test_the_daily_audio_quota_is_charged_on_every_surface(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    full_key, record = issue_key("quota test", audio_seconds_per_day=1.0)
    await server.app[SERVICES].backend.put_key(record)
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("model", "whisper-1")
        form.add_field("file", _wav(3.0), filename="a.wav")
        async with http.post(
            http_base(server) + "/v1/audio/transcriptions",
            data=form,
            headers={"Authorization": f"Bearer {full_key}"},
        ) as response:
            assert response.status == 429
            assert (await response.json())["error"]["code"] == "audio_quota_exceeded"
        # the day's allowance is spent: a live stream is cut off at its first charge
        ws = await http.ws_connect(ws_base(server) + DEEPGRAM, headers={"Authorization": f"Token {full_key}"})
        with contextlib.suppress(ConnectionError):  # the server may close while we still send
            for _ in range(12):
                await ws.send_bytes(bytes(3200))
        frames = []
        async with asyncio.timeout(10):
            async for message in ws:
                frames.append(json.loads(message.data))
        assert ws.close_code == 1008
        assert any(f["type"] == "Error" and f["variant"] == "audio_quota_exceeded" for f in frames)
