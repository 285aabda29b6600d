"""The vendor sockets hold to ``/v1/stream``'s defences: a silent socket loses its slot, a cross-site page
cannot open one, a compressed frame cannot inflate, an oversized text message is refused and the session
goes on."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, make_settings

from streamer.adapters.openai.socket import MAX_APPEND_TEXT
from streamer.edge.upgrade import close_reason_bytes
from streamer.protocol import MAX_TEXT_BYTES

from .conftest import ws_base

ServerFactory = Callable[..., Awaitable[TestServer]]
DEEPGRAM = "/v1/listen?encoding=linear16&sample_rate=16000"
OPENAI = "/v1/realtime?intent=transcription"
IDLE_S = 0.6


async def _connect(
    http: aiohttp.ClientSession, server: TestServer, surface: str, **kwargs: Any
) -> aiohttp.ClientWebSocketResponse:
    if surface == "deepgram":
        headers = {"Authorization": f"Token {API_KEY}", **kwargs.pop("headers", {})}
        return await http.ws_connect(ws_base(server) + DEEPGRAM, headers=headers, **kwargs)
    headers = {"Authorization": f"Bearer {API_KEY}", **kwargs.pop("headers", {})}
    ws = await http.ws_connect(ws_base(server) + OPENAI, headers=headers, **kwargs)
    assert json.loads((await ws.receive(timeout=5)).data)["type"] == "session.created"
    return ws


async def _until_closed(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> tuple[list[Any], str]:
    """Every JSON frame up to the close, and the close reason."""
    frames = []
    async with asyncio.timeout(timeout):
        while (msg := await ws.receive()).type == WSMsgType.TEXT:
            frames.append(json.loads(msg.data))
    assert msg.type == WSMsgType.CLOSE, msg
    return frames, msg.extra or ""


async def test_a_silent_deepgram_socket_is_closed_as_deepgram_closes_it(make_server: ServerFactory) -> None:
    # the free tier holds one session per key: the second socket opens only if the first gave its slot back
    server = await make_server(
        make_settings(api_key_tier="free", idle_timeout_s=IDLE_S), asr_engine=FakeAsr()
    )
    async with aiohttp.ClientSession() as http:
        ws = await _connect(http, server, "deepgram")
        frames, reason = await _until_closed(ws, IDLE_S + 5)
        assert ws.close_code == 1011  # as Deepgram documents NET-0001 (issue 21 item 4)
        assert reason.startswith("NET-0001: session_idle"), reason
        assert [f.get("variant") for f in frames if f["type"] == "Error"] == ["session_idle"], frames
        assert frames[-1]["type"] == "Metadata", frames
        again = await _connect(http, server, "deepgram")
        await again.send_str(json.dumps({"type": "CloseStream"}))
        await _until_closed(again, 5)
        assert again.close_code == 1000


async def test_deepgram_keepalive_keeps_a_socket_open(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(idle_timeout_s=IDLE_S), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        ws = await _connect(http, server, "deepgram")
        for _ in range(8):  # 1.6 s, well past the idle timeout
            await ws.send_str(json.dumps({"type": "KeepAlive"}))
            await asyncio.sleep(IDLE_S / 3)
        assert not ws.closed
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        await _until_closed(ws, 5)
        assert ws.close_code == 1000


async def test_a_silent_openai_socket_is_not_idle(make_server: ServerFactory) -> None:
    # OpenAI's protocol has no keep-alive event: a push-to-talk client may be silent (issue 21 item 4)
    server = await make_server(make_settings(idle_timeout_s=IDLE_S), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        ws = await _connect(http, server, "openai")
        with pytest.raises(TimeoutError):  # three idle timeouts of silence: nothing comes, no close
            await ws.receive(timeout=3 * IDLE_S)
        assert not ws.closed
        await ws.close()


@pytest.mark.parametrize("surface", ["deepgram", "openai"])
async def test_a_cross_site_page_cannot_open_a_vendor_socket(
    make_server: ServerFactory, surface: str
) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await _connect(http, server, surface, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        # the server's own pages may (the Origin names its host)
        own = f"http://{server.host}:{server.port}"
        ws = await _connect(http, server, surface, headers={"Origin": own})
        await ws.close()


@pytest.mark.parametrize("surface", ["deepgram", "openai"])
async def test_vendor_sockets_refuse_permessage_deflate(make_server: ServerFactory, surface: str) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        ws = await _connect(http, server, surface, compress=15)
        assert ws.compress == 0, "a compressed frame of a few KiB would inflate to megabytes of CPU"
        await ws.close()


async def test_an_oversized_deepgram_text_message_is_refused_and_the_session_goes_on(
    make_server: ServerFactory,
) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        ws = await _connect(http, server, "deepgram")
        await ws.send_str(json.dumps({"type": "KeepAlive", "padding": "x" * MAX_TEXT_BYTES}))
        await ws.send_bytes(bytes(3200))
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        frames, _ = await _until_closed(ws, 5)
        assert ws.close_code == 1000
        errors = [f for f in frames if f["type"] == "Error"]
        assert [e["variant"] for e in errors] == ["bad_request"], frames
        assert "too large" in errors[0]["description"]
        assert frames[-1]["type"] == "Metadata" and frames[-1]["duration"] == pytest.approx(0.1, abs=0.032), (
            frames
        )


async def test_openai_appends_as_large_as_allowed_pass_the_text_limit(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        ws = await _connect(http, server, "openai")
        second = base64.b64encode(bytes(48_000)).decode()  # 1 s at 24 kHz: far past 4 KiB of text
        await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": second}))
        over = "A" * (MAX_APPEND_TEXT + 4)  # more text than the largest append (10 s at 48 kHz) needs
        await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": over}))
        frames = []
        async with asyncio.timeout(5):
            while not any(f["type"] == "error" for f in frames):
                frames.append(await ws.receive_json())
        errors = [f["error"] for f in frames if f["type"] == "error"]
        assert [e["code"] for e in errors] == ["bad_request"], frames
        assert "too large" in errors[0]["message"]
        await ws.close()


def test_a_close_reason_is_cut_to_123_bytes_without_splitting_a_character() -> None:
    reason = close_reason_bytes("DATA-0000: " + "é" * 100)  # "é" is two bytes; 11 + 112 leaves one over
    assert len(reason) <= 123
    assert reason.decode("utf-8").startswith("DATA-0000: é")


async def test_a_deepgram_option_in_any_script_is_refused_with_a_readable_reason(
    make_server: ServerFactory,
) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        url = ws_base(server) + DEEPGRAM + "&language=x" + "é" * 60  # the 123-byte cut falls inside an é
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # 400 before the upgrade
            await http.ws_connect(url, headers={"Authorization": f"Token {API_KEY}"})
    assert refused.value.status == 400 and refused.value.headers is not None
    assert refused.value.headers["dg-error"].startswith("language 'x"), refused.value.headers
