"""One client's bad request must not take the model from everyone (the issue's item 1).

A ``session.update`` with a language the model lacks used to reach the model thread; the tokenizer's
``ValueError`` counted as a model failure, three of them opened the ASR breaker, and every session got
``model_unavailable``. Now the edge refuses the value, and the batcher tells a request error (which fails
that request only) from a model failure (which counts toward the breaker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad
from session.doubles import services

from streamer.errors import ConfigError, ModelUnavailableError
from streamer.guards.breaker import BreakerState, CircuitBreaker
from streamer.guards.keys import KeyRecord
from streamer.pipeline.batcher import MicroBatcher
from streamer.protocol import SessionConfig
from streamer.session.registry import SessionRegistry

from .conftest import AUTH, hostile_settings, start_session

KEY = ("transcribe", None)


def tokenizer_like(key: Hashable, payloads: list[str]) -> list[str]:
    """A model whose tokenizer rejects the language ``zz`` for the whole batch, as faster-whisper's does."""
    if "zz" in payloads:
        raise ValueError("zz is not a valid language code")
    return [f"ok:{p}" for p in payloads]


async def test_a_request_error_fails_that_request_and_not_the_breaker() -> None:
    breaker = CircuitBreaker("asr", failure_threshold=1, reset_timeout_s=60.0)
    batcher: MicroBatcher[str, str] = MicroBatcher(
        "asr", tokenizer_like, max_batch=8, max_wait_s=0.05, breaker=breaker
    )
    async with batcher:
        jobs = [batcher.submit_final(f"s{i}", KEY, p) for i, p in enumerate(["en", "zz", "de"])]
        results = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), 5.0)
        assert results[0] == "ok:en" and results[2] == "ok:de", results
        assert isinstance(results[1], ConfigError) and not isinstance(results[1], ModelUnavailableError)
        for _ in range(5):  # the same client again and again, alone in its batch
            with pytest.raises(ConfigError):
                await asyncio.wait_for(batcher.submit_final("s1", KEY, "zz"), 5.0)
        assert breaker.state is BreakerState.CLOSED
        assert await asyncio.wait_for(batcher.submit_final("s0", KEY, "en"), 5.0) == "ok:en"


async def test_a_model_failure_still_opens_the_breaker() -> None:
    def broken(key: Hashable, payloads: list[str]) -> list[str]:
        raise RuntimeError("CUDA error: out of memory")

    breaker = CircuitBreaker("asr", failure_threshold=2, reset_timeout_s=60.0)
    batcher: MicroBatcher[str, str] = MicroBatcher(
        "asr", broken, max_batch=1, max_wait_s=0.0, breaker=breaker
    )
    async with batcher:
        for _ in range(2):
            with pytest.raises(ModelUnavailableError):
                await asyncio.wait_for(batcher.submit_final("s", KEY, "en"), 5.0)
        assert breaker.state is BreakerState.OPEN


class Multilingual(FakeAsr):
    def languages(self) -> frozenset[str]:
        return frozenset({"en", "de", "es"})


async def test_session_update_with_an_unknown_language_is_refused_at_the_edge(make_server: Any) -> None:
    server: TestServer = await make_server(
        hostile_settings(), asr_engine=Multilingual(multilingual=True), vad=EnergyVad()
    )
    async with aiohttp.ClientSession() as http:
        session = await start_session(http, server)
        ws = await http.ws_connect(server.make_url(f"/v1/stream?token={session['token']}"))
        assert (await ws.receive_json(timeout=5.0))["type"] == "session.created"
        await ws.send_json({"type": "session.update", "config": {"language": "zz"}})
        error = await ws.receive_json(timeout=5.0)
        assert error["type"] == "error" and error["code"] == "invalid_config", error
        assert "'zz'" in error["message"]
        # the session goes on with its old config
        await ws.send_json({"type": "session.update", "config": {"language": "de"}})
        await ws.send_json({"type": "ping", "id": 1})
        assert await ws.receive_json(timeout=5.0) == {"type": "pong", "id": 1}
        await ws.close()
        async with http.post(server.make_url("/v1/sessions"), json={"language": "zz"}, headers=AUTH) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_config"


async def test_every_surface_without_tokens_gets_the_same_config_check() -> None:
    """The adapters start sessions through ``SessionRegistry.admit``: it validates like POST does."""
    key = KeyRecord(key_id="k1", key_hash="", name="one", tier="standard", created_at=0.0)
    async with services(asr=Multilingual(multilingual=True)) as svc:
        registry = SessionRegistry(svc)
        with pytest.raises(ConfigError, match="'zz'"):
            await registry.admit(key, SessionConfig(language="zz"))
        assert await svc.backend.active_sessions("k1") == 0  # refused before a slot was taken
        session = await registry.admit(key, SessionConfig(language="de"))
        assert session.config.language == "de"
