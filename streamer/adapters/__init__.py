"""Drop-in surfaces for the APIs people already use, as thin translators over protocol v1's sessions."""

from __future__ import annotations

from aiohttp import web

from streamer.adapters import deepgram, openai_models, openai_realtime, transcriptions


def setup_adapters(app: web.Application) -> None:
    """Register the vendor-compatible routes (Deepgram live, OpenAI Realtime, audio transcriptions
    and the model list)."""
    app.router.add_routes(deepgram.ROUTES)
    app.router.add_routes(openai_realtime.ROUTES)
    app.router.add_routes(transcriptions.ROUTES)
    app.router.add_routes(openai_models.ROUTES)
