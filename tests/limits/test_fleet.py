"""Two real server processes sharing one Redis: one concurrent-session quota, one key store, and
single-use tokens across instances."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import pytest
import redis.asyncio as aioredis
from support import JWT_SECRET

from streamer.guards.keys import hash_key, static_key_pepper

from .conftest import ADMIN, ADMIN_KEY, create_key, free_port, post_session, upgrade

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 40.0


@dataclass
class Instance:
    base: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]


@dataclass
class Fleet:
    a: Instance
    b: Instance
    static_key: str
    made: list[str]  # ids of the keys the test created, deleted afterwards

    async def key(self, http: aiohttp.ClientSession, base: str, **body: object) -> tuple[str, str]:
        made = await create_key(http, base, **body)
        self.made.append(made["key_id"])
        return made["key"], made["key_id"]


async def _wait_ready(http: aiohttp.ClientSession, inst: Instance) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if inst.proc.poll() is not None:
            pytest.fail(f"server exited with {inst.proc.returncode}:\n{inst.output()}")
        try:
            async with http.get(f"{inst.base}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail(f"server at {inst.base} not ready after {START_TIMEOUT_S}s:\n{inst.output()}")


def _spawn(env: dict[str, str]) -> Instance:
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed at teardown, read when a start fails
    command = [sys.executable, "-m", "streamer", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Instance(f"http://127.0.0.1:{port}", proc, log)


@pytest.fixture
async def fleet(redis_url: str) -> AsyncIterator[Fleet]:
    static_key = "fleet-" + secrets.token_urlsafe(24)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env = {
        **inherited,
        "STREAMER_REDIS_URL": redis_url,
        "STREAMER_JWT_SECRET": JWT_SECRET,
        "STREAMER_ADMIN_KEY": ADMIN_KEY or "",
        "STREAMER_API_KEYS": static_key,
        "STREAMER_API_KEY_TIER": "unlimited",
        "STREAMER_ASR_MODEL": "tiny.en",
        "STREAMER_DEVICE": "cpu",
        "STREAMER_ASR_THREADS": "1",
        "STREAMER_DRAIN_TIMEOUT_S": "1",
        "STREAMER_LOG_LEVEL": "WARNING",
    }
    instances: list[Instance] = []
    made: list[str] = []
    try:
        instances += [_spawn(env), _spawn(env)]
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(_wait_ready(http, inst) for inst in instances))
        yield Fleet(instances[0], instances[1], static_key, made)
    finally:
        stopping = time.monotonic()
        for inst in instances:
            inst.proc.terminate()
        for inst in instances:
            try:
                inst.proc.wait(10)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait(5)
            inst.log.close()
        stop_s = time.monotonic() - stopping
        # only this test's keys: its key ids are random and its static key is new (token ids expire alone)
        static_id = hash_key(static_key, static_key_pepper(JWT_SECRET))[:8]
        keys = [f"streamer:sessions:{static_id}"]
        keys += [f"streamer:{kind}:{key_id}" for key_id in made for kind in ("key", "sessions", "audio")]
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.delete(*keys)
            if made:
                await client.srem("streamer:keys", *made)
        finally:
            await client.aclose()
    # nothing was left running: each stops well within its drain timeout (1 s) + aiohttp's grace (5 s)
    assert stop_s < 5.0, f"the servers took {stop_s:.1f}s to stop"


async def _until_resumable(http: aiohttp.ClientSession, base: str, key: str, session_id: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 3
    while True:
        async with http.post(f"{base}/v1/sessions/{session_id}/resume", headers=headers) as r:
            if r.status == 201:
                return
            assert r.status == 404, await r.text()
        assert time.monotonic() < deadline, "the dropped session was never parked"
        await asyncio.sleep(0.05)


async def test_one_quota_one_key_store_single_use_tokens(fleet: Fleet) -> None:
    a, b = fleet.a.base, fleet.b.base
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        # a key made on A is known to B; its limit of 3 holds across both
        key, key_id = await fleet.key(http, a, max_sessions=3)
        statuses = [(await post_session(http, base, key))[0] for base in (a, b, a, b, a, b)]
        assert statuses == [201, 201, 201, 429, 429, 429]

        # the same under a race: 20 parallel creates spread over both instances admit exactly 3
        raced, _ = await fleet.key(http, b, max_sessions=3)
        results = await asyncio.gather(*(post_session(http, (a, b)[i % 2], raced) for i in range(20)))
        assert sorted(status for status, _, _ in results) == [201] * 3 + [429] * 17
        for status, body, headers in results:
            if status == 429:
                assert body["error"]["code"] == "concurrent_sessions_exceeded"
                assert headers["X-RateLimit-Remaining"] == "0" and int(headers["Retry-After"]) >= 1

        # a token minted on A works once, on B; then never again, anywhere
        status, body, _ = await post_session(http, a, fleet.static_key)
        assert status == 201
        assert await upgrade(http, b, body["token"]) == 101
        assert await upgrade(http, a, body["token"]) == 401
        assert await upgrade(http, b, body["token"]) == 401

        # that client dropped at once; its session is parked on B, so it can resume there
        await _until_resumable(http, b, fleet.static_key, body["session_id"])

        # revoked on B, refused on A
        async with http.delete(f"{b}/v1/admin/keys/{key_id}", headers=ADMIN) as r:
            assert r.status == 204
        status, body, _ = await post_session(http, a, key)
        assert (status, body["error"]["code"]) == (401, "unauthorized")
