"""Drop-in surfaces for the APIs people already use, as thin translators over protocol v1's sessions."""

from __future__ import annotations

from aiohttp import web

from streamer.adapters import deepgram, transcriptions, translations
from streamer.adapters.openai import models as openai_models
from streamer.adapters.openai import socket as openai_socket
from streamer.adapters.vendor_errors import domain_error, vendor_errors
from streamer.edge.handshake import ERROR_SHAPE


def setup_adapters(app: web.Application) -> None:
    """Register the vendor-compatible routes (Deepgram live, OpenAI Realtime, audio transcriptions
    and the model list)."""
    app.router.add_routes(deepgram.ROUTES)
    app.router.add_routes(openai_socket.ROUTES)
    app.router.add_routes(transcriptions.ROUTES)
    app.router.add_routes(translations.ROUTES)
    app.router.add_routes(openai_models.ROUTES)
    # 404 and 405 on these routes (inside the edge middleware) and the edge's own refusals on them (its
    # throttle's 429) in the vendor's error body
    app.middlewares.append(vendor_errors)
    app[ERROR_SHAPE] = domain_error
