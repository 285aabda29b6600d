"""The vendor routes' own error bodies for what the edge and the router answer: a path under a vendor's
prefix that does not exist (404), a method it does not take (405), and the edge's own refusals (the
throttle on failed authentication: 429) answer as that vendor does, not in protocol v1's shape, so a
migrating client's error handling sees what it was written for."""

from __future__ import annotations

import uuid

from aiohttp import web

from streamer.adapters.deepgram import options as deepgram_options
from streamer.adapters.deepgram.query import ERR_CODES
from streamer.adapters.openai import rest as openai_rest
from streamer.edge.handshake import Handler
from streamer.errors import StreamerError

DEEPGRAM_PREFIXES = ("/v1/listen", "/v1/auth/grant")
OPENAI_PREFIXES = ("/v1/realtime", "/v1/audio/", "/v1/models")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _deepgram(e: web.HTTPException) -> web.Response:
    err_code = ERR_CODES.get(e.status, e.reason.upper())
    refused = deepgram_options.DeepgramRequestError(e.status, err_code, e.reason)
    response = deepgram_options.error_response(refused, str(uuid.uuid4()))
    response.headers.update(_kept(e))
    return response


def _openai(request: web.Request, e: web.HTTPException) -> web.Response:
    where = f"({request.method} {request.path[:200]})"
    message = f"Invalid URL {where}" if e.status == 404 else f"{e.reason} {where}"
    body = openai_rest.error_body(message, "invalid_request_error", None)
    return web.json_response(body, status=e.status, headers=_kept(e))


def _kept(e: web.HTTPException) -> dict[str, str]:
    """The exception's own headers (``Allow`` on a 405), less the body's type."""
    return {k: v for k, v in e.headers.items() if k.lower() != "content-type"}


@web.middleware
async def vendor_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inside the edge middleware: the router's 404 and 405 on a vendor's paths, in the vendor's body."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if _under(request.path, DEEPGRAM_PREFIXES):
            return _deepgram(e)
        if _under(request.path, OPENAI_PREFIXES):
            return _openai(request, e)
        raise


def domain_error(request: web.Request, e: StreamerError) -> web.Response | None:
    """A refusal the edge makes before a vendor's handler runs, in that vendor's body (None: not one)."""
    if _under(request.path, DEEPGRAM_PREFIXES):
        return deepgram_options.refusal(e)
    if _under(request.path, OPENAI_PREFIXES):
        return openai_rest.error_response(e)
    return None
