"""Deepgram's listen v1, live and pre-recorded, over the same sessions as protocol v1.

``socket`` is the live ``GET /v1/listen`` (its multichannel sessions: ``channels``; its audio: ``audio``),
``rest`` the pre-recorded ``POST /v1/listen``, ``grant`` the temporary tokens; ``options`` and ``query``
read a request (credentials, every option of Deepgram's reference supported or refused), ``render``
writes Deepgram's results from protocol v1 messages.
"""

from __future__ import annotations

from aiohttp import web

from streamer.adapters.deepgram import grant, rest, socket

ROUTES = [
    web.get("/v1/listen", socket.listen),
    web.post("/v1/listen", rest.transcribe),
    web.post("/v1/auth/grant", grant.grant),
]
