"""CORS for the REST API (``aiohttp-cors``), from the ``STREAMER_ALLOWED_ORIGINS`` allowlist.

Only the browser-facing REST resources take part; the WebSocket route checks ``Origin`` itself before
the upgrade (``edge.check_origin``; both compare origins normalized by ``session.validation``), and the
admin, health and metrics routes are not for browsers.
A preflight from an origin on the list gets 200 with the ``Access-Control-*`` headers; any other origin
gets 403 (a JSON error, through the edge middleware). ``*`` on the list admits every origin explicitly;
credentials (cookies) are never allowed, since the API authenticates with bearer keys.
"""

from __future__ import annotations

import logging

import aiohttp_cors
from aiohttp import hdrs, web

from streamer.config import Settings
from streamer.session.validation import normalize_origin

log = logging.getLogger(__name__)

REST_PATHS = frozenset(
    {
        "/v1/sessions",
        "/v1/sessions/{session_id}/resume",
        "/v1/demo/session",
        "/v1/stream/models",
        "/v1/models",
        "/v1/models/{model}",
    }
)
ALLOW_HEADERS = ("Authorization", "Content-Type", "X-Request-ID")
EXPOSE_HEADERS = (
    "Retry-After",
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)
PREFLIGHT_MAX_AGE_S = 600

CORS_RESOURCES: web.AppKey[frozenset[web.AbstractResource]] = web.AppKey("cors_resources", frozenset)


def setup_cors(app: web.Application, settings: Settings) -> None:
    """Enable CORS on the REST resources already registered on ``app`` (call after adding routes)."""
    origins = sorted({normalize_origin(o) for o in settings.allowed_origins if o.strip()})
    if "*" in origins:
        log.warning("CORS: every origin may call the REST API (STREAMER_ALLOWED_ORIGINS contains '*')")
    cors = aiohttp_cors.setup(app)
    enabled: set[web.AbstractResource] = set()
    for resource in list(app.router.resources()):
        if resource.canonical not in REST_PATHS:
            continue
        methods = sorted({route.method for route in resource} - {hdrs.METH_OPTIONS})
        # allow_methods can only be given this way (the mapping form refuses it); the class is untyped
        options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
            allow_credentials=False,
            allow_headers=ALLOW_HEADERS,
            expose_headers=EXPOSE_HEADERS,
            allow_methods=methods,
            max_age=PREFLIGHT_MAX_AGE_S,
        )
        # registered even with an empty allowlist, so every preflight gets a clear 403 (not a 405)
        cors.add(resource, {origin: options for origin in origins})
        enabled.add(resource)
    app[CORS_RESOURCES] = frozenset(enabled)
    app.on_response_prepare.append(_vary_on_origin)


async def _vary_on_origin(request: web.Request, response: web.StreamResponse) -> None:
    """The CORS headers depend on ``Origin``: tell caches so (aiohttp-cors does not)."""
    resource = request.match_info.route.resource
    if resource is None or resource not in request.app[CORS_RESOURCES]:
        return
    vary = response.headers.get(hdrs.VARY, "")
    if "origin" not in vary.lower():
        response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"
