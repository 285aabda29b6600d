"""OpenAI audio translations: ``POST /v1/audio/translations`` (multipart), speech in any language to
English text.

The same way through the server as a transcription (:mod:`streamer.adapters.transcriptions`): admitted
before the body is read, decoded as a stream into a protocol v1 session, whose ``task`` is ``translate``
(Whisper's own speech-to-English decode). Its form is OpenAI's: ``file``, ``model``, ``prompt``,
``response_format`` (json, text, srt, vtt, verbose_json) and ``temperature``. An English-only model
(``tiny.en``) cannot translate: the request is refused with a 400 whose ``param`` is ``model``.
"""

from __future__ import annotations

from aiohttp import web

from streamer.adapters.transcriptions import handle


async def translations(request: web.Request) -> web.StreamResponse:
    """``POST /v1/audio/translations``."""
    return await handle(request, "translate")


ROUTES = [web.post("/v1/audio/translations", translations)]
