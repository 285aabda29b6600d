"""OpenAI's error shape and request bodies, for the REST routes (client secrets, transcriptions) and
the refusals before a socket's upgrade."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from streamer.adapters.common import key_record
from streamer.adapters.openai.wire import ClientEventError, json_object
from streamer.edge.credentials import retry_after
from streamer.edge.handshake import bearer
from streamer.errors import StreamerError
from streamer.guards.keys import KeyRecord
from streamer.services import Services


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body (every OpenAI route's refusals, the router's on its paths too)."""
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}


def error_response(e: StreamerError) -> web.Response:
    kind = "invalid_request_error" if e.status < 500 else "server_error"
    if e.status == 429:
        kind = "rate_limit_error"
    param = e.param if isinstance(e, ClientEventError) else None
    headers = {"Retry-After": retry_after(e.retry_after)} if e.retry_after is not None else {}
    return web.json_response(error_body(e.message, kind, e.code, param), status=e.status, headers=headers)


async def bearer_key(request: web.Request, services: Services) -> KeyRecord:
    """The record of the key in ``Authorization: Bearer``; 401 without one."""
    return await key_record(services, bearer(request))


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read() if request.can_read_body else b""
    return json_object(raw, "the body") if raw.strip() else {}
