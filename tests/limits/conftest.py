"""Fixtures for the limits at the HTTP edge: an energy VAD, admin helpers, Redis (shared and private).

Redis-backed tests use ``STREAMER_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) or start their
own ``redis-server`` on a free port. Without one they skip locally but FAIL when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from support import make_settings, skip_or_fail

from streamer.client import Stream
from streamer.pipeline.audio import Audio
from streamer.pipeline.vad import WINDOW
from streamer.state.redis_backend import RedisBackend

ADMIN_KEY = make_settings().admin_key
assert ADMIN_KEY is not None
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
RATE = 16000


# --- audio without a real VAD: loud windows are speech


class EnergyVad:
    """A deterministic stand-in for Silero: a 32 ms window is speech when its RMS passes 0.02."""

    def new_stream(self) -> EnergyStream:
        return EnergyStream()


class EnergyStream:
    def __init__(self) -> None:
        self._pending: Audio = np.zeros(0, dtype=np.float32)

    def probabilities(self, audio: Audio) -> tuple[npt.NDArray[np.float32], list[Audio]]:
        buf = np.concatenate([self._pending, audio]) if self._pending.size else audio
        n = buf.size // WINDOW
        self._pending = buf[n * WINDOW :].copy()
        windows = list(buf[: n * WINDOW].reshape(n, WINDOW))
        probs = [1.0 if math.sqrt(float(np.mean(np.square(w)))) > 0.02 else 0.0 for w in windows]
        return np.asarray(probs, dtype=np.float32), windows


def tone(seconds: float, amplitude: float = 0.3) -> bytes:
    """A 220 Hz tone (speech to ``EnergyVad``) as PCM16 at 16 kHz."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 220 * t) * amplitude * 32767).astype("<i2").tobytes()


def quiet(seconds: float) -> bytes:
    return bytes(int(seconds * RATE) * 2)


def frames(pcm: bytes, ms: int = 100) -> list[bytes]:
    step = RATE * ms // 1000 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


@pytest.fixture
def vad() -> EnergyVad:
    return EnergyVad()


# --- the admin API


async def create_key(http: aiohttp.ClientSession, base: str, **body: Any) -> dict[str, Any]:
    """A key made with ``POST /v1/admin/keys``; the answer's JSON (with the full ``key``)."""
    body.setdefault("name", f"test-{uuid.uuid4().hex[:8]}")
    async with http.post(f"{base}/v1/admin/keys", json=body, headers=ADMIN) as r:
        data: dict[str, Any] = await r.json()
        assert r.status == 201, data
    return data


async def post_session(
    http: aiohttp.ClientSession, base: str, key: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST /v1/sessions``: (status, JSON body, headers)."""
    async with http.post(f"{base}/v1/sessions", json={}, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(), dict(r.headers)


async def upgrade(http: aiohttp.ClientSession, base: str, token: str, **headers: str) -> int:
    """The status of a WebSocket upgrade with ``token`` (101 when accepted; the socket is closed again)."""
    url = base.replace("http", "ws", 1) + f"/v1/stream?token={token}"
    try:
        ws = await http.ws_connect(url, headers=headers)
    except aiohttp.WSServerHandshakeError as e:
        return e.status
    await ws.close()
    return 101


async def events_until_closed(stream: Stream, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every event up to the close (``stream.close_code`` is set then)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        event = await stream.receive(timeout=max(0.01, deadline - time.monotonic()))
        if event is None:
            return out
        out.append(event)


def error_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1, events
    return errors[0]


# --- Redis


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A fresh key prefix on the shared Redis; its keys are deleted afterwards."""
    prefix = f"streamer-test:{uuid.uuid4().hex}:"
    yield prefix
    await delete_matching(redis_url, f"{prefix}*")


async def delete_matching(url: str, pattern: str) -> None:
    cleaner = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in cleaner.scan_iter(match=pattern)]
        if keys:
            await cleaner.delete(*keys)
    finally:
        await cleaner.aclose()


@pytest.fixture
async def redis_backend(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBackend]:
    # generous timeouts: these tests are about atomicity, not about a slow machine failing open
    backend = RedisBackend(redis_url, key_prefix=redis_prefix, socket_timeout_s=5.0, connect_timeout_s=5.0)
    yield backend
    await backend.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisProcess:
    """A private ``redis-server`` on a free port, without persistence, that tests stop and start."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*args, "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        self._spawn()
        client = aioredis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            for _ in range(100):
                try:
                    await client.ping()
                    return
                except RedisError:
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("redis-server is not installed")
    assert binary is not None
    server = RedisProcess(binary)
    yield server
    server.stop()
