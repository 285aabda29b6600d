"""What only the Redis backend has to show: instances sharing state, and failing fast when Redis is down."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamer.guards.keys import issue_key
from streamer.state.backend import BackendUnavailableError
from streamer.state.connect import create_backend
from streamer.state.redis_backend import RedisBackend, _redact, record_from_fields, record_to_fields

from .conftest import RedisFactory


@pytest.mark.redis
async def test_two_instances_share_the_session_quota(redis_backends: RedisFactory) -> None:
    a, b = redis_backends(), redis_backends()
    calls = [(a if i % 2 else b).acquire_session("k", f"s{i}", 5, 60.0) for i in range(50)]
    decisions = await asyncio.gather(*calls)
    assert sum(d.allowed for d in decisions) == 5
    assert await a.active_sessions("k") == await b.active_sessions("k") == 5
    held = next(f"s{i}" for i, d in enumerate(decisions) if d.allowed)
    await a.release_session("k", held)
    assert (await b.acquire_session("k", "late", 5, 60.0)).allowed


@pytest.mark.redis
async def test_two_instances_share_the_audio_quota_and_token_ids(redis_backends: RedisFactory) -> None:
    a, b = redis_backends(), redis_backends()
    charges = [(a if i % 2 else b).charge_audio("k", 1.0, 10.0) for i in range(50)]
    assert sum(d.allowed for d in await asyncio.gather(*charges)) == 10
    assert await a.audio_used("k") == await b.audio_used("k") == 10.0
    assert await a.consume_jti("j", 60.0)
    assert not await b.consume_jti("j", 60.0)
    _, rec = issue_key("shared")
    await a.put_key(rec)
    assert await b.get_key(rec.key_id) == rec


@pytest.mark.redis
async def test_keys_get_ttls_so_nothing_leaks(redis_backends: RedisFactory) -> None:
    backend = redis_backends()
    await backend.acquire_session("k", "s", 5, 30.0)
    await backend.charge_audio("k", 1.0, None)
    await backend.consume_jti("j", 30.0)
    client = backend._redis
    prefix = backend.key_prefix
    assert 0 < await client.pttl(f"{prefix}sessions:k") <= 30_000
    assert 0 < await client.ttl(f"{prefix}audio:k") <= 86_400 + 3_600
    assert 0 < await client.pttl(f"{prefix}jti:j") <= 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_unreachable_redis_raises_backend_unavailable() -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(BackendUnavailableError) as info:
            await backend.ping()
        assert isinstance(info.value.__cause__, RedisConnectionError)
        with pytest.raises(BackendUnavailableError):
            await backend.acquire_session("k", "s", 1, 10.0)
        with pytest.raises(BackendUnavailableError):
            await backend.charge_audio("k", 1.0, 10.0)
        with pytest.raises(BackendUnavailableError):
            await backend.consume_jti("j", 10.0)
    finally:
        await backend.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_hung_redis_fails_fast(silent_server: int) -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{silent_server}/0", socket_timeout_s=0.05, retries=0)
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            await backend.ping()
        assert isinstance(info.value.__cause__, RedisTimeoutError)
        assert time.monotonic() - started < 1.0
    finally:
        await backend.close()


@pytest.mark.redis
async def test_create_backend_with_url(redis_url: str) -> None:
    backend = await create_backend(redis_url)
    assert isinstance(backend, RedisBackend)
    await backend.close()


async def test_create_backend_tolerates_or_requires_an_unreachable_redis() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    backend = await create_backend(url, connect_attempts=1)
    assert isinstance(backend, RedisBackend)
    await backend.close()
    with pytest.raises(BackendUnavailableError):
        await create_backend(url, connect_attempts=1, require=True)


def test_record_codec_round_trips() -> None:
    _, rec = issue_key("codec", "unlimited", max_sessions=4, audio_seconds_per_day=0.1)
    assert record_from_fields(record_to_fields(rec)) == rec
    as_bytes = {str(k).encode(): str(v).encode() for k, v in record_to_fields(rec).items()}
    assert record_from_fields(as_bytes) == rec


def test_urls_are_redacted_for_logs() -> None:
    assert _redact("redis://user:hunter2@host:6379/0") == "redis://user:***@host:6379/0"
    assert _redact("redis://:hunter2@host/0") == "redis://:***@host/0"
    assert _redact("redis://host:6379/0") == "redis://host:6379/0"
