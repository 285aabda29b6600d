"""Every HTTP answer, errors included, carries the security headers; no error body leaks a stack trace,
a secret, or what the client sent as a credential."""

from __future__ import annotations

import io
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, JWT_SECRET, base_url, make_settings

from streamer.edge.handshake import SECURITY_HEADERS
from streamer.guards.keys import KeyRecord
from streamer.state.backend import MemoryBackend

from .conftest import ADMIN, ADMIN_KEY, EnergyVad

SECRET_IN_ERROR = "redis://:hunter2-password@db.internal:6379"


class BrokenKeyStore(MemoryBackend):
    """A backend whose key lookups fail with an unexpected error that names a secret."""

    async def get_key(self, key_id: str) -> KeyRecord | None:
        raise RuntimeError(f"cannot reach {SECRET_IN_ERROR}")


@pytest.fixture
async def server(make_server: Any) -> TestServer:
    settings = make_settings(allowed_origins=("https://app.example.com",))
    server: TestServer = await make_server(
        settings, asr_engine=FakeAsr(), vad=EnergyVad(), backend=BrokenKeyStore()
    )
    return server


AUTH = {"Authorization": f"Bearer {API_KEY}"}
GENERATED_KEY = "sk_abcdefghij_" + "x" * 43  # shaped like an admin-made key: looked up in the backend

CASES: list[tuple[str, str, dict[str, str], Any, int]] = [
    ("GET", "/healthz", {}, None, 200),
    ("GET", "/readyz", {}, None, 200),
    ("GET", "/metrics", {}, None, 200),
    ("GET", "/v1/models", {}, None, 200),
    ("GET", "/v1/stream/models", {}, None, 200),
    ("GET", "/", {}, None, 200),
    ("GET", "/no/such/route", {}, None, 404),
    ("GET", "/v1/admin/../../etc/passwd", {}, None, 404),
    ("DELETE", "/v1/sessions", AUTH, None, 405),
    ("POST", "/v1/sessions", {}, {}, 401),
    ("POST", "/v1/sessions", {"Authorization": "Bearer not-a-key"}, {}, 401),
    ("POST", "/v1/sessions", AUTH, {"sample_rate": "fast"}, 400),
    ("POST", "/v1/sessions", AUTH, {"bogus": 1}, 400),
    ("POST", "/v1/sessions", {**AUTH, "Content-Type": "application/json"}, b"{not json", 400),
    ("POST", "/v1/sessions", AUTH, b"x" * (2 << 20), 413),
    ("POST", "/v1/sessions", {"Authorization": f"Bearer {GENERATED_KEY}"}, {}, 500),
    ("GET", "/v1/stream", {}, None, 401),
    ("GET", "/v1/stream?token=abc", {}, None, 401),
    ("GET", "/v1/stream?token=abc", {"Origin": "https://evil.example.net"}, None, 403),
    ("POST", "/v1/sessions/sess_nope/resume", AUTH, None, 404),
    ("POST", "/v1/demo/session", {}, None, 403),
    ("GET", "/v1/admin/keys", {}, None, 401),
    ("POST", "/v1/admin/keys", ADMIN, {"name": "x", "tier": "platinum"}, 400),
    ("GET", "/v1/admin/keys/nope", ADMIN, None, 500),  # the broken key store again
    ("DELETE", "/v1/admin/keys/nope", ADMIN, None, 404),
    ("POST", "/v1/admin/breakers/nope/reset", ADMIN, None, 404),
    (
        "OPTIONS",
        "/v1/sessions",
        {"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
        None,
        403,
    ),
    (
        "OPTIONS",
        "/v1/sessions",
        {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        None,
        200,
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"), CASES, ids=[f"{c[0]} {c[1]} {c[4]}" for c in CASES]
)
async def test_headers_and_clean_errors(
    server: TestServer, method: str, path: str, headers: dict[str, str], body: Any, status: int
) -> None:
    if isinstance(body, bytes) and len(body) > 1 << 20:
        body = io.BytesIO(body)  # aiohttp warns about large raw bytes bodies
    kwargs: dict[str, Any] = {"json": body} if isinstance(body, dict) else {"data": body}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, base_url(server) + path, headers=headers, **kwargs) as r:
            text = await r.text()
            assert r.status == status, text
            for name, value in SECURITY_HEADERS.items():
                assert r.headers.get(name) == value, name
            assert r.headers["X-Request-ID"]
    if status >= 400:
        error = json.loads(text)["error"]
        assert set(error) == {"code", "message"} and error["code"]
    for leak in (
        "Traceback",
        'File "',
        SECRET_IN_ERROR,
        "hunter2",
        API_KEY,
        GENERATED_KEY,
        JWT_SECRET,
        ADMIN_KEY,
    ):
        assert leak is not None and leak not in text


async def test_request_id_is_echoed_only_when_sane(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url(server)}/healthz", headers={"X-Request-ID": "abc-123"}) as r:
            assert r.headers["X-Request-ID"] == "abc-123"
        async with http.get(f"{base_url(server)}/healthz", headers={"X-Request-ID": "x" * 500}) as r:
            assert r.headers["X-Request-ID"] != "x" * 500
