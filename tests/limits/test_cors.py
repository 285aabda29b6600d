"""CORS on the REST API from the allowlist, and the WebSocket's own Origin check before the upgrade."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from .conftest import ADMIN, EnergyVad, upgrade

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"


async def _server(make_server: Any, origins: tuple[str, ...]) -> TestServer:
    settings = make_settings(allowed_origins=origins)
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    return server


async def _preflight(
    server: TestServer,
    path: str,
    origin: str,
    method: str = "POST",
    headers: str = "authorization,content-type",
) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http:
        request_headers = {
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        }
        async with http.options(base_url(server) + path, headers=request_headers) as r:
            await r.read()
            return r


@pytest.mark.parametrize(
    "path",
    [
        "/v1/sessions",
        "/v1/stream/models",
        "/v1/models",
        "/v1/models/whisper-1",
        "/v1/demo/session",
        "/v1/sessions/s1/resume",
    ],
)
async def test_preflight_allows_listed_origins_only(make_server: Any, path: str) -> None:
    server = await _server(make_server, (ALLOWED + "/",))  # a trailing slash in the setting is forgiven
    method = "GET" if "/models" in path else "POST"
    ok = await _preflight(server, path, ALLOWED, method)
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert ok.headers["Access-Control-Allow-Methods"] == method
    assert {h.strip().lower() for h in ok.headers["Access-Control-Allow-Headers"].split(",")} == {
        "authorization",
        "content-type",
    }
    assert ok.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in ok.headers
    assert ok.headers["X-Content-Type-Options"] == "nosniff"

    refused = await _preflight(server, path, OTHER, method)
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert refused.headers["Content-Type"].startswith("application/json")
    # a method the resource does not have, or a header not on the list, is refused too
    assert (await _preflight(server, path, ALLOWED, "DELETE")).status == 403
    assert (await _preflight(server, path, ALLOWED, method, "x-secret-header")).status == 403


async def test_actual_requests_carry_cors_headers_for_allowed_origins(make_server: Any) -> None:
    server = await _server(make_server, (ALLOWED,))
    async with aiohttp.ClientSession() as http:
        headers = {"Origin": ALLOWED, "Authorization": f"Bearer {API_KEY}"}
        async with http.post(f"{base_url(server)}/v1/sessions", json={}, headers=headers) as r:
            assert r.status == 201
            assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
            exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
            assert {"retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-request-id"} <= exposed
            assert "Origin" in r.headers["Vary"]
        # errors are readable cross-origin too (the browser needs the JSON error)
        async with http.post(
            f"{base_url(server)}/v1/sessions",
            json={},
            headers={"Origin": ALLOWED, "Authorization": "Bearer x"},
        ) as r:
            assert r.status == 401
            assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
        async with http.get(f"{base_url(server)}/v1/models", headers={"Origin": OTHER}) as r:
            assert r.status == 200
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_star_allows_every_origin_explicitly(make_server: Any) -> None:
    server = await _server(make_server, ("*",))
    r = await _preflight(server, "/v1/sessions", OTHER)
    assert r.status == 200
    assert r.headers["Access-Control-Allow-Origin"] == OTHER


async def test_no_allowlist_refuses_every_preflight(make_server: Any) -> None:
    server = await _server(make_server, ())
    r = await _preflight(server, "/v1/sessions", ALLOWED)
    assert r.status == 403
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_admin_and_ops_routes_are_not_cors_enabled(make_server: Any) -> None:
    server = await _server(make_server, ("*",))
    for path in ("/v1/admin/keys", "/healthz", "/v1/stream"):
        r = await _preflight(server, path, ALLOWED, "GET")
        assert r.status == 405, path
        assert "Access-Control-Allow-Origin" not in r.headers
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url(server)}/v1/admin/keys", headers={**ADMIN, "Origin": ALLOWED}) as r:
            assert r.status == 200
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_websocket_origin_is_checked_before_the_upgrade(make_server: Any) -> None:
    server = await _server(make_server, (ALLOWED,))
    base = base_url(server)
    host = server.make_url("").host
    port = server.make_url("").port
    async with aiohttp.ClientSession() as http:

        async def token() -> str:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with http.post(f"{base}/v1/sessions", json={}, headers=headers) as r:
                data: dict[str, Any] = await r.json()
                return str(data["token"])

        cross = await token()
        assert await upgrade(http, base, cross, Origin=OTHER) == 403
        # the refusal came before the token was spent: the same token still works without a browser Origin
        assert await upgrade(http, base, cross) == 101
        assert await upgrade(http, base, await token(), Origin=f"http://{host}:{port}") == 101  # same host
        assert await upgrade(http, base, await token(), Origin=ALLOWED) == 101
        assert await upgrade(http, base, await token(), Origin="null") == 403

        url = base.replace("http", "ws", 1) + f"/v1/stream?token={await token()}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await http.ws_connect(url, headers={"Origin": OTHER})
        assert e.value.status == 403
