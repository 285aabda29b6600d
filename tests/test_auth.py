"""Refusals happen before the WebSocket upgrade, with HTTP 401 and the contract's error body."""

from __future__ import annotations

import base64
import json
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from support import API_KEY, JWT_SECRET, base_url

from streamer.client import ClientError, StreamerClient
from streamer.guards.tokens import TokenService
from streamer.protocol import SessionConfig


async def _post_session(server: TestServer, headers: dict[str, str]) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/sessions", json={}, headers=headers) as r:
            await r.read()
            return r


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer nope"}],
    ids=["missing", "empty", "wrong-scheme", "unknown"],
)
async def test_bad_api_key_is_401(server: TestServer, headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/sessions", json={}, headers=headers) as r:
            body = await r.json()
            assert r.status == 401
            assert body["error"]["code"] == "unauthorized"
            assert "nope" not in json.dumps(body)  # the presented key is never echoed


async def test_session_created_with_good_key(server: TestServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base_url(server)}/v1/sessions",
            json={"language": "en"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as r,
    ):
        body = await r.json()
    assert r.status == 201
    assert set(body) >= {"session_id", "token", "expires_at", "ws_url", "config", "limits"}
    assert body["config"]["language"] == "en"
    assert body["expires_at"] - time.time() == pytest.approx(60, abs=5)


async def _upgrade_status(server: TestServer, token: str, *, subprotocol: bool = False) -> int:
    url = base_url(server).replace("http", "ws", 1) + "/v1/stream"
    async with aiohttp.ClientSession() as http:
        try:
            if subprotocol:
                ws = await http.ws_connect(url, protocols=("streamer.v1", f"token.{token}"))
            else:
                ws = await http.ws_connect(f"{url}?token={token}")
        except aiohttp.WSServerHandshakeError as e:
            return e.status
        await ws.close()
        return 101


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_token_forms_and_refusals(server: TestServer) -> None:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        good = await client.create_session({})
        assert await _upgrade_status(server, good.token, subprotocol=True) == 101
        # single use: the same token is refused the second time, in either form
        assert await _upgrade_status(server, good.token) == 401
        assert await _upgrade_status(server, good.token, subprotocol=True) == 401

        fresh = await client.create_session({})
        assert await _upgrade_status(server, fresh.token) == 101

    expired, _ = TokenService(JWT_SECRET, ttl_s=-5).issue("sess_x", "k", SessionConfig())
    assert await _upgrade_status(server, expired) == 401

    other, _ = TokenService("another-secret-0123456789abcdef0123456789", ttl_s=60).issue(
        "sess_x", "k", SessionConfig()
    )
    assert await _upgrade_status(server, other) == 401

    claims = {
        "iss": "streamer",
        "aud": "streamer.stream",
        "sub": "sess_x",
        "jti": "abc",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "cfg": {},
    }
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert await _upgrade_status(server, unsigned) == 401
    assert await _upgrade_status(server, "not-a-jwt") == 401
    assert await _upgrade_status(server, "") == 401


async def test_no_token_is_401_with_json_body(server: TestServer) -> None:
    url = base_url(server) + "/v1/stream"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        body = await r.json()
    assert r.status == 401
    assert body["error"]["code"] == "unauthorized"


async def test_bad_config_is_400(client: StreamerClient) -> None:
    for config in ({"bogus": 1}, {"sample_rate": 4000}, {"task": "dance"}, {"language": "xx"}):
        with pytest.raises(ClientError) as e:
            await client.create_session(config)
        assert e.value.status == 400, config
        assert e.value.code == "invalid_config"
    with pytest.raises(ClientError) as e:
        await client.create_session({"translate_to": ["es"]})  # no MT model configured
    assert e.value.status == 400
    assert e.value.code == "unsupported_language"


async def test_unknown_route_is_a_json_404(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url(server)}/no/such/route") as r:
            body = await r.json()
        async with http.delete(f"{base_url(server)}/v1/sessions") as r2:
            body2 = await r2.json()
    assert r.status == 404 and body["error"]["code"] == "not_found"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r2.status == 405 and body2["error"]["code"] == "method_not_allowed"
