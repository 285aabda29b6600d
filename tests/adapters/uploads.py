"""Shared by the upload tests of both surfaces (OpenAI's transcriptions, Deepgram's pre-recorded
``/v1/listen``): silent WAVs, a request answered before its body, a server run as ``streamer serve``
runs it, a backend whose clock the test moves."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import wave
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad

from streamer.app import create_app
from streamer.config import Settings
from streamer.state.backend import MemoryBackend

SLOW = {"upload_realtime_factor": 1.0, "realtime_burst_s": 1.0}  # an upload still running when looked at


def wav(seconds: float) -> bytes:
    """Silence, 16 kHz mono."""
    return wav_of(bytes(int(seconds * 16000) * 2))


def wav_of(pcm: bytes) -> bytes:
    """PCM16 at 16 kHz mono in a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    return out.getvalue()


async def answer_before_the_body(
    server: TestServer, head: str, first: bytes
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send ``head`` (which promises more body than comes) and ``first``: the answer must come anyway."""
    assert server.port is not None
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head.encode() + first)
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, json.loads(body)
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[web.Application, str]]:
    """The app as ``streamer serve`` runs it: aiohttp does not cancel a handler whose client left
    (TestServer does), so an upload must notice by itself. Yields the app and its base URL."""
    app = create_app(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    runner = web.AppRunner(app)  # handler_cancellation off, as in streamer/listen.py
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield app, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


class WatchedBackend(MemoryBackend):
    """The memory backend on a clock the test moves; says which slots are refreshed."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        super().__init__(clock=lambda: self.now)
        self.refreshed: set[str] = set()
        self.refreshing = asyncio.Event()

    async def refresh_session(self, key_id: str, session_id: str, ttl_s: float) -> bool:
        held = await super().refresh_session(key_id, session_id, ttl_s)
        self.refreshed.add(session_id)
        self.refreshing.set()
        return held
