"""The admin API: keys made, listed, used and revoked; breakers listed and reset; who may call it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import JWT_SECRET, base_url, make_settings

from streamer.edge.handshake import SERVICES
from streamer.guards.breaker import BreakerState

from .conftest import ADMIN, ADMIN_KEY, EnergyVad, create_key, post_session


@pytest.fixture
async def server(make_server: Any) -> TestServer:
    server: TestServer = await make_server(asr_engine=FakeAsr(), vad=EnergyVad())
    return server


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "wrong-scheme", "empty"],
)
async def test_admin_routes_need_the_admin_key(server: TestServer, headers: dict[str, str]) -> None:
    base = base_url(server)
    calls = [
        ("POST", "/v1/admin/keys"),
        ("GET", "/v1/admin/keys"),
        ("GET", "/v1/admin/keys/abcdefghij"),
        ("DELETE", "/v1/admin/keys/abcdefghij"),
        ("GET", "/v1/admin/breakers"),
        ("POST", "/v1/admin/breakers/asr/reset"),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path in calls:
            async with http.request(method, base + path, json={"name": "x"}, headers=headers) as r:
                body = await r.json()
                assert r.status == 401, (method, path)
                assert body["error"]["code"] == "unauthorized"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
    # an API key is not an admin key
    assert server.app[SERVICES].breakers["asr"].state is BreakerState.CLOSED


async def test_admin_api_is_off_without_an_admin_key(make_server: Any) -> None:
    server = await make_server(make_settings(admin_key=None), asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/admin/keys", "/v1/admin/breakers"):
            async with http.get(base_url(server) + path, headers=ADMIN) as r:
                body = await r.json()
                assert r.status == 404
                assert body["error"]["code"] == "admin_disabled"


async def test_create_list_use_and_revoke_a_key(server: TestServer) -> None:
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        made = await create_key(http, base, name="acme", tier="free", max_sessions=2)
        key, key_id = made["key"], made["key_id"]
        assert set(made) == {
            "key",
            "key_id",
            "name",
            "tier",
            "created_at",
            "revoked",
            "max_sessions",
            "audio_seconds_per_day",
            "limits",
        }
        assert key.startswith(f"sk_{key_id}_")
        assert (made["name"], made["tier"], made["revoked"]) == ("acme", "free", False)
        assert made["max_sessions"] == 2 and made["audio_seconds_per_day"] is None
        assert made["limits"] == {"max_sessions": 2, "audio_seconds_per_day": 600.0}  # free tier's audio

        async with http.get(f"{base}/v1/admin/keys", headers=ADMIN) as r:
            listed = await r.json()
            assert r.status == 200
        text = json.dumps(listed)
        assert key not in text and key.split("_", 2)[2] not in text  # the secret is shown once only
        assert "hash" not in text
        (entry,) = [k for k in listed["keys"] if k["key_id"] == key_id]
        assert entry == {k: v for k, v in made.items() if k != "key"}

        status, body, headers = await post_session(http, base, key)
        assert status == 201, body
        assert headers["X-RateLimit-Limit"] == "2" and headers["X-RateLimit-Remaining"] == "1"

        async with http.get(f"{base}/v1/admin/keys/{key_id}", headers=ADMIN) as r:
            one = await r.json()
        assert one["usage"] == {"active_sessions": 1, "audio_seconds_today": 0.0}

        async with http.delete(f"{base}/v1/admin/keys/{key_id}", headers=ADMIN) as r:
            assert r.status == 204
        status, body, _ = await post_session(http, base, key)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        async with http.get(f"{base}/v1/admin/keys/{key_id}", headers=ADMIN) as r:
            assert (await r.json())["revoked"] is True

        async with http.delete(f"{base}/v1/admin/keys/nosuchkey1", headers=ADMIN) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "key_not_found"
        async with http.get(f"{base}/v1/admin/keys/nosuchkey1", headers=ADMIN) as r:
            assert r.status == 404


async def test_created_key_answer_is_not_cached(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/admin/keys", json={"name": "n"}, headers=ADMIN) as r:
            assert r.status == 201
            assert r.headers["Cache-Control"] == "no-store"
            data = await r.json()
            assert r.headers["Location"] == f"/v1/admin/keys/{data['key_id']}"
            assert data["tier"] == "standard"  # the default tier


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"name": ""}',
        b'{"name": "   "}',
        b'{"name": "a\\u0000b"}',
        b'{"name": "x", "tier": "gold"}',
        b'{"name": "x", "extra": 1}',
        b'{"name": "x", "max_sessions": -1}',
        b'{"name": "x", "max_sessions": "5"}',
        b'{"name": "x", "max_sessions": 1.5}',
        b'{"name": "x", "max_sessions": true}',
        b'{"name": "x", "audio_seconds_per_day": -3}',
        b'{"name": "x", "audio_seconds_per_day": "NaN"}',
        b'{"name": 5}',
        b'{"name": "' + b"n" * 101 + b'"}',
    ],
)
async def test_bad_key_requests_are_400(server: TestServer, body: bytes) -> None:
    headers = {**ADMIN, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/admin/keys", data=body, headers=headers) as r:
            data = await r.json()
            assert r.status == 400, data
            assert data["error"]["code"] == "invalid_request"
            assert "Traceback" not in json.dumps(data)
        async with http.get(f"{base_url(server)}/v1/admin/keys", headers=ADMIN) as r:
            assert (await r.json())["keys"] == []  # nothing was stored


async def test_breakers_listed_and_reset(server: TestServer) -> None:
    base = base_url(server)
    breaker = server.app[SERVICES].breakers["asr"]
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/v1/admin/breakers", headers=ADMIN) as r:
            listed = await r.json()
        assert listed == {
            "breakers": [
                {
                    "name": "asr",
                    "state": "open",
                    "failures": 3,
                    "failure_threshold": 3,
                    "reset_timeout_s": 10.0,
                    "retry_after_s": pytest.approx(10.0, abs=1.0),
                }
            ]
        }
        async with http.post(f"{base}/v1/admin/breakers/asr/reset", headers=ADMIN) as r:
            reset = await r.json()
            assert r.status == 200
        assert (reset["state"], reset["failures"], reset["retry_after_s"]) == ("closed", 0, 0.0)
        assert breaker.state is BreakerState.CLOSED
        async with http.post(f"{base}/v1/admin/breakers/nope/reset", headers=ADMIN) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "breaker_not_found"


async def test_admin_key_is_not_an_api_key_and_secrets_stay_out(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        status, body, _ = await post_session(http, base_url(server), ADMIN_KEY or "")
        assert status == 401
        assert ADMIN_KEY not in json.dumps(body) and JWT_SECRET not in json.dumps(body)
