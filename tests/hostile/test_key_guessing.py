"""Guessing keys: not offline from a token's ``kid``, not online faster than a few tries a minute, and not
against a short static or admin key (refused at start-up)."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad
from pydantic import ValidationError
from support import API_KEY

from streamer.config import Settings
from streamer.config_env import load_settings
from streamer.errors import ConfigError

from .conftest import AUTH, hostile_settings

WRONG = {"Authorization": "Bearer sk_wrongwrong_" + "x" * 43}


async def _kid(http: aiohttp.ClientSession, server: TestServer) -> str:
    async with http.post(server.make_url("/v1/sessions"), json={}, headers=AUTH) as r:
        assert r.status == 201
        token = (await r.json())["token"]
    kid: str = jwt.decode(token, options={"verify_signature": False})["kid"]
    return kid


async def test_a_tokens_key_id_does_not_test_guesses_of_a_static_key(make_server: Any) -> None:
    settings = hostile_settings()
    first: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    second: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        kid = await _kid(http, first)
        # the old id was sha256(key)[:8]: anyone with a token could check guesses of the key offline
        assert kid != hashlib.sha256(API_KEY.encode()).hexdigest()[:8]
        assert kid == await _kid(http, second)  # instances sharing the secret agree (quotas are per id)


@pytest.mark.parametrize("field", ["api_keys", "admin_key"])
def test_short_static_and_admin_keys_are_refused_at_start_up(
    field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(**{field: ("dev-key",) if field == "api_keys" else "dev-key"})
    monkeypatch.setenv(f"STREAMER_{field.upper()}", "dev-key")
    with pytest.raises(ConfigError, match=f"STREAMER_{field.upper()}") as refused:
        load_settings()
    assert "dev-key" not in str(refused.value)  # a key is never echoed back


async def test_failed_authentications_are_throttled_per_address(make_server: Any) -> None:
    settings = hostile_settings(auth_failures_per_min=5.0, trusted_proxies=("127.0.0.1",))
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    guesser = {**WRONG, "X-Forwarded-For": "203.0.113.7"}
    async with aiohttp.ClientSession() as http:
        statuses = []
        for path in ["/v1/sessions"] * 4 + ["/v1/admin/keys"] + ["/v1/sessions"] * 2:
            async with http.post(server.make_url(path), headers=guesser) as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
                body = await r.json()
        assert statuses[:5] == [401] * 5, statuses
        assert statuses[5:] == [429, 429], statuses
        assert body["error"]["code"] == "auth_rate_limited" and retry_after is not None
        # even the right key waits from that address; another client is not affected
        right_from_guesser = {**AUTH, "X-Forwarded-For": "203.0.113.7"}
        async with http.post(server.make_url("/v1/sessions"), json={}, headers=right_from_guesser) as r:
            assert r.status == 429
        async with http.post(server.make_url("/v1/sessions"), json={}, headers=AUTH) as r:
            assert r.status == 201
        # health checks are never throttled: the load balancer may share the guesser's address
        async with http.get(server.make_url("/healthz"), headers=guesser) as r:
            assert r.status == 200
