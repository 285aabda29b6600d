"""Uploads cannot stall the server: a WAV header that declares 1 Hz (a few kilobytes that resample to an
hour) is refused, and long uploads are fed paced, yielding to the loop, so ``/healthz`` and a live
``/v1/stream`` session beside a flood of them are untouched (issue 23 item 1), on both upload surfaces
(OpenAI's transcriptions and Deepgram's pre-recorded ``/v1/listen``: issue 22 item 5)."""

from __future__ import annotations

import asyncio
import io
import struct
import time
from typing import Any

import aiohttp
import numpy as np
import pytest
from adapters.uploads import wav
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import CHUNK, utterance
from support import API_KEY

from .conftest import AUTH, hostile_settings, start_session

HEALTHZ_MAX_S = 0.25


def one_hertz_wav(samples: int = 3590) -> bytes:
    """What the red team sent: 7 KB of noise behind a header that says 1 sample per second (an hour)."""
    data = np.random.default_rng(1).integers(-20000, 20000, samples, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 1, 2, 2, 16)  # PCM, mono, 1 Hz, 2 bytes/s, align 2, 16 bits
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


async def upload(http: aiohttp.ClientSession, server: TestServer, body: bytes) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", io.BytesIO(body), filename="a.wav")
    async with http.post(server.make_url("/v1/audio/transcriptions"), data=form, headers=AUTH) as r:
        return r.status, await r.json()


async def deepgram_upload(http: aiohttp.ClientSession, server: TestServer, body: bytes) -> tuple[int, Any]:
    headers = {"Authorization": f"Token {API_KEY}", "Content-Type": "audio/wav"}
    async with http.post(server.make_url("/v1/listen"), data=io.BytesIO(body), headers=headers) as r:
        return r.status, await r.json()


def deepgram_text(body: Any) -> str:
    transcript: str = body["results"]["channels"][0]["alternatives"][0]["transcript"]
    return transcript


SURFACES = {
    "transcriptions": (upload, lambda body: body["text"]),
    "deepgram": (deepgram_upload, deepgram_text),
}


async def test_a_sample_rate_under_8_khz_is_refused_at_once(make_server: Any) -> None:
    server: TestServer = await make_server(hostile_settings(), asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(5):
            status, body = await upload(http, server, one_hertz_wav())
    assert status == 400, body
    assert body["error"]["code"] == "invalid_audio"
    assert "1 Hz" in body["error"]["message"] and "8000 Hz" in body["error"]["message"]


@pytest.mark.parametrize("surface", SURFACES)
async def test_a_flood_of_uploads_leaves_healthz_and_a_live_session_untouched(
    make_server: Any, surface: str
) -> None:
    post, text = SURFACES[surface]
    # the real Silero VAD (the loop's cost per audio second), a fake model (the test's speed)
    settings = hostile_settings(uploads_per_key=8)
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(text="hello there"))
    latencies: list[float] = []
    took: list[float] = []
    live_events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        session = await start_session(http, server)
        ws = await http.ws_connect(server.make_url(f"/v1/stream?token={session['token']}"))
        assert (await ws.receive_json(timeout=5.0))["type"] == "session.created"
        finished = asyncio.Event()

        async def probe() -> None:
            while not finished.is_set():
                started = time.perf_counter()
                async with http.get(server.make_url("/healthz")) as r:
                    assert r.status == 200
                    await r.read()
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)

        async def live() -> None:
            pcm = utterance()
            for i in range(0, len(pcm), CHUNK):  # 100 ms frames at 2x real time
                await ws.send_bytes(pcm[i : i + CHUNK])
                await asyncio.sleep(0.05)
            await ws.send_json({"type": "session.close"})
            while (msg := await ws.receive()).type == WSMsgType.TEXT:
                live_events.append(msg.json())

        async def timed(body: bytes) -> tuple[int, Any]:
            started = asyncio.get_running_loop().time()
            answer = await post(http, server, body)
            took.append(asyncio.get_running_loop().time() - started)
            return answer

        prober = asyncio.create_task(probe())
        floods = [post(http, server, one_hertz_wav()) for _ in range(3)]
        floods += [timed(wav(60.0)) for _ in range(3)]
        try:
            async with asyncio.timeout(25):
                results, _ = await asyncio.gather(asyncio.gather(*floods), live())
        finally:
            finished.set()
            await asyncio.wait({prober}, timeout=5)
        await prober
    kinds = [e["type"] for e in live_events]
    assert "transcript.final" in kinds and "error" not in kinds, live_events
    assert live_events[-1]["type"] == "session.closed" and live_events[-1]["reason"] == "client_closed"
    print(f"healthz: {len(latencies)} probes, max {max(latencies) * 1000:.1f} ms")
    assert latencies and max(latencies) < HEALTHZ_MAX_S, sorted(latencies)[-5:]
    assert [status for status, _ in results] == [400, 400, 400, 200, 200, 200], results
    assert [text(body) for _, body in results[3:]] == ["", "", ""]
    # fed paced: a minute of audio takes at least what the pacer allows (a floor, never a race)
    floor_s = (60.0 - settings.realtime_burst_s) / settings.upload_realtime_factor
    assert len(took) == 3 and min(took) >= floor_s, (took, floor_s)
