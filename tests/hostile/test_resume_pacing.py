"""Resume must not lift the real-time pacing, move the session's clock, or repeat without end.

A red-team client dropped and resumed eight times: each resume exempted 30 s of *any* audio from the 3x
pacer (138 s pushed in 9.3 s) and ``audio_from_ms`` moved the clock to 2,060 s after 30 s of audio. Now
only the audio the drop cut off (between the last final and the last audio received) is exempt, the
clock moves at most to what was received, and resumes per key are rate limited.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import eventually
from limits.conftest import EnergyVad

from streamer.edge.handshake import REGISTRY

from .conftest import AUTH, hostile_settings, start_session

SILENCE_500MS = b"\x00\x00" * 8000  # 16 kHz PCM16
BURST_S = 2.0


async def _connect(http: aiohttp.ClientSession, server: TestServer, token: str, query: str = "") -> Any:
    ws = await http.ws_connect(server.make_url(f"/v1/stream?token={token}{query}"))
    created = await ws.receive_json(timeout=5.0)
    assert created["type"] == "session.created", created
    return ws


async def _until_pong(ws: Any) -> dict[str, Any]:
    """Ping, then read until the pong or an error: the reader handles messages in order, so the pong
    says every frame before it was accepted."""
    await ws.send_json({"type": "ping", "id": "p"})
    while True:
        msg = await ws.receive_json(timeout=5.0)
        if msg["type"] in ("pong", "error"):
            return dict(msg)


async def _resume(http: aiohttp.ClientSession, server: TestServer, session_id: str) -> aiohttp.ClientResponse:
    async with http.post(server.make_url(f"/v1/sessions/{session_id}/resume"), headers=AUTH) as r:
        await r.read()
        return r


async def _dropped_after_one_second(http: aiohttp.ClientSession, server: TestServer) -> str:
    """A session that received 1 s of audio, then lost its connection (parked)."""
    body = await start_session(http, server)
    ws = await _connect(http, server, body["token"])
    for _ in range(2):
        await ws.send_bytes(SILENCE_500MS)
    assert (await _until_pong(ws))["type"] == "pong"
    await ws.close()
    registry = server.app[REGISTRY]
    await eventually(lambda: body["session_id"] in registry.parked, "the dropped session to be parked")
    return str(body["session_id"])


async def test_a_resume_exempts_only_the_audio_the_drop_cut_off(make_server: Any) -> None:
    server: TestServer = await make_server(
        hostile_settings(realtime_burst_s=BURST_S, resume_window_s=30.0),
        asr_engine=FakeAsr(),
        vad=EnergyVad(),
    )
    async with aiohttp.ClientSession() as http:
        session_id = await _dropped_after_one_second(http, server)
        async with http.post(server.make_url(f"/v1/sessions/{session_id}/resume"), headers=AUTH) as r:
            body = await r.json()
            assert r.status == 201, body
        ws = await _connect(http, server, body["token"], "&last_seq=0&audio_from_ms=0")
        # the second of audio the session had received comes again (skipped, not paced) ...
        for _ in range(2):
            await ws.send_bytes(SILENCE_500MS)
        assert (await _until_pong(ws))["type"] == "pong"
        # ... and new audio after it is paced as always: 12 s at once is far over the 2 s burst
        for _ in range(24):
            await ws.send_bytes(SILENCE_500MS)
        answer = await _until_pong(ws)
        assert answer["type"] == "error" and answer["code"] == "audio_rate_exceeded", answer
        await ws.close()


async def test_audio_from_ms_cannot_move_the_clock_past_the_audio_received(make_server: Any) -> None:
    server: TestServer = await make_server(
        hostile_settings(resume_window_s=30.0), asr_engine=FakeAsr(), vad=EnergyVad()
    )
    registry = server.app[REGISTRY]
    async with aiohttp.ClientSession() as http:
        session_id = await _dropped_after_one_second(http, server)
        async with http.post(server.make_url(f"/v1/sessions/{session_id}/resume"), headers=AUTH) as r:
            body = await r.json()
            assert r.status == 201, body
        ws = await _connect(http, server, body["token"], "&last_seq=0&audio_from_ms=2060000")
        session = registry.sessions[session_id]
        assert session.audio_ms <= 1000  # not 2,060,000: admission would count it at its 5 % floor
        for _ in range(2):
            await ws.send_bytes(SILENCE_500MS)  # taken as new audio after the first second
        assert (await _until_pong(ws))["type"] == "pong"
        assert session.audio_ms <= 2000
        await ws.close()


async def test_resumes_per_key_are_rate_limited_in_the_protocols_error_shape(make_server: Any) -> None:
    server: TestServer = await make_server(
        hostile_settings(resume_window_s=30.0, resume_rate_per_key_per_min=2.0),
        asr_engine=FakeAsr(),
        vad=EnergyVad(),
    )
    async with aiohttp.ClientSession() as http:
        session_id = await _dropped_after_one_second(http, server)
        for _ in range(2):
            assert (await _resume(http, server, session_id)).status == 201
        async with http.post(server.make_url(f"/v1/sessions/{session_id}/resume"), headers=AUTH) as r:
            body = await r.json()
            assert r.status == 429, body
            assert body["error"]["code"] == "resume_rate_exceeded", body
            assert int(r.headers["Retry-After"]) >= 1


async def test_a_drop_and_resume_does_not_refill_the_burst(make_server: Any) -> None:
    server: TestServer = await make_server(
        hostile_settings(max_realtime_factor=1.0, realtime_burst_s=4.0, resume_window_s=30.0),
        asr_engine=FakeAsr(),
        vad=EnergyVad(),
    )
    registry = server.app[REGISTRY]
    async with aiohttp.ClientSession() as http:
        body = await start_session(http, server)
        ws = await _connect(http, server, body["token"])
        for _ in range(8):  # the whole 4 s burst at once
            await ws.send_bytes(SILENCE_500MS)
        assert (await _until_pong(ws))["type"] == "pong"
        await ws.close()
        await eventually(lambda: body["session_id"] in registry.parked, "the dropped session to be parked")
        async with http.post(server.make_url(f"/v1/sessions/{body['session_id']}/resume"), headers=AUTH) as r:
            resumed = await r.json()
            assert r.status == 201, resumed
        ws = await _connect(http, server, resumed["token"], "&last_seq=0")
        # a new connection used to get a full burst again: 4 s at once after every resume
        for _ in range(6):
            await ws.send_bytes(SILENCE_500MS)
        answer = await _until_pong(ws)
        assert answer["type"] == "error" and answer["code"] == "audio_rate_exceeded", answer
        await ws.close()
