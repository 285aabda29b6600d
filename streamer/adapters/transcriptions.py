"""OpenAI audio transcriptions: ``POST /v1/audio/transcriptions`` (multipart), whole files or as events.

The request is admitted before its body is read (rate, the key's uploads in progress, the audio quota
left, capacity, the key's concurrent sessions: :mod:`streamer.adapters.upload_runner`), then the form is
read (:mod:`streamer.adapters.upload_form`) and the file is decoded by PyAV (WAV, FLAC, MP3, OGG/Opus,
WebM, ...) to 16 kHz mono a chunk at a time, straight into an ordinary protocol v1 session, paced like
live audio: charged to the key's daily audio quota, cut into utterances by the session's VAD and
transcribed by the shared batcher, with the decode fallback and, for ``timestamp_granularities[]=word``,
word alignment. So a file of any length works without being held decoded, and a model failure is a 503
like everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import IO, Any

from aiohttp import web

from streamer import tracing
from streamer.adapters import openai_diarized
from streamer.adapters.common import check_language
from streamer.adapters.openai_session import bearer_key, error_response
from streamer.adapters.upload_form import Form, read_form
from streamer.adapters.upload_runner import ClientGoneError, Ticket, admitted, feed
from streamer.errors import OverloadedError, StreamerError
from streamer.pipeline.audio import MODEL_RATE
from streamer.protocol import SessionConfig, TranscriptFinal, Word
from streamer.session.edge import REGISTRY, REQUEST_ID
from streamer.session.outbox import Outbox
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession
from streamer.session.validation import check_session_config

log = logging.getLogger(__name__)

OnFinal = Callable[[TranscriptFinal], Awaitable[None]]


async def transcriptions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/audio/transcriptions``."""
    started = tracing.now()  # the session.start span: from here to the session's opening
    registry = request.app[REGISTRY]
    services = registry.services
    try:
        key = await bearer_key(request, services)
        async with admitted(registry, key) as ticket:
            form = await read_form(request)
            assert form.file is not None
            with contextlib.closing(form.file):
                config = SessionConfig(
                    sample_rate=MODEL_RATE,
                    language=check_language(services, form.language),
                    interim_results=False,
                    word_timestamps="word" in form.granularities,
                    diarize=form.response_format == openai_diarized.FORMAT,
                )
                check_session_config(services, config)
                session = registry.open(ticket.session_id, key.key_id, config)
                session.trace = tracing.session_started(
                    session.trace, session.session_id, request[REQUEST_ID], started, surface="transcriptions"
                )
                # from here the session is the registry's: released however this ends (D4)
                async with _Upload(registry, session, ticket) as upload:
                    return await _respond(request, upload, form.file, form)
    except StreamerError as e:
        services.metrics.refused(e)
        return error_response(e)


async def _respond(
    request: web.Request, upload: _Upload, source: IO[bytes], form: Form
) -> web.StreamResponse:
    if form.stream:
        return await _stream(request, upload, source)
    try:
        seconds = await upload.transcribe(source, request)
    except StreamerError as e:
        return error_response(e)
    except ClientGoneError:
        upload.left()
        return web.Response(status=499)  # nobody reads it (nginx's "client closed request")
    return _answer(form, upload.finals, seconds)


class _Upload:
    """The registry's attachment for a session carried by one HTTP request: attached on entry, released
    (its slot given back, its trace closed) on exit, whatever happened between."""

    def __init__(self, registry: SessionRegistry, session: StreamSession, ticket: Ticket) -> None:
        self.registry = registry
        self.session = session
        self.ticket = ticket
        self.finals: list[TranscriptFinal] = []
        self.on_final: OnFinal | None = None
        self.failed: StreamerError | None = None
        self.fatal = asyncio.Event()
        self.outbox = Outbox(self._collect, maxsize=registry.services.settings.session_out_queue)
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Upload:
        self.registry.attach(self.session, self, self.outbox)
        self.session.on_fatal = self._fail
        self._writer = asyncio.create_task(self.outbox.run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        registry, session = self.registry, self.session
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.wait({self._writer})
        self.outbox.abandon()
        registry.spawn(self.ticket.quota.settle(), f"settle-{session.session_id}")
        await asyncio.shield(registry.detach(session, self, ended=True))  # see SessionSocket.run

    async def _collect(self, text: str) -> None:
        message = json.loads(text)
        if message.get("type") == "transcript.final":
            final = TranscriptFinal.model_validate(message)
            self.finals.append(final)
            if self.on_final is not None:
                await self.on_final(final)

    def left(self) -> None:
        log.info("the client left; its upload stopped", extra={"session_id": self.session.session_id})

    def _fail(self, e: StreamerError) -> None:
        self.failed = e
        self.fatal.set()

    async def transcribe(
        self,
        source: IO[bytes],
        request: web.Request,
        on_final: OnFinal | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> float:
        """Feed the file through the session, paced; the finals are in ``finals`` (``on_final`` hears each
        one as it comes, ``on_start`` is awaited once the file is known to decode). Returns the audio's
        length in seconds."""
        assert self._writer is not None
        self.on_final = on_final
        factor = self.registry.services.settings.upload_realtime_factor
        feeding = asyncio.create_task(
            feed(self.session, self.ticket, source, factor, lambda: _gone(request), on_start)
        )
        fatal = asyncio.create_task(self.fatal.wait())
        try:
            await asyncio.wait({feeding, fatal}, return_when=asyncio.FIRST_COMPLETED)
            if self.failed is not None:
                raise self.failed
            seconds = await feeding  # its own error (a quota refusal, an undecodable file) is the answer
            await self.outbox.finish()
            await asyncio.wait({self._writer})
            return seconds
        finally:
            for task in (feeding, fatal):
                task.cancel()
            await asyncio.wait({feeding, fatal})

    async def hand_over(self) -> None:
        return None  # nothing resumes an upload's session

    async def shutdown(self) -> None:
        """Server shutdown: a paced upload could outlast the drain, so it stops now with a retryable 503
        (the client sends the file again to another instance)."""
        self._fail(OverloadedError("the server is shutting down; send the file again", retry_after=5.0))


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _stream(request: web.Request, upload: _Upload, source: IO[bytes]) -> web.StreamResponse:
    """``stream=true``: a ``transcript.text.delta`` event per utterance, then ``transcript.text.done``."""
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Request-ID": request[REQUEST_ID],
    }
    response = web.StreamResponse(headers=headers)
    texts: list[str] = []

    async def start() -> None:
        await response.prepare(request)

    async def send(event: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(event)}\n\n".encode())

    async def on_final(final: TranscriptFinal) -> None:
        delta = final.text if not texts else " " + final.text
        texts.append(final.text)
        await send({"type": "transcript.text.delta", "delta": delta})

    try:
        await upload.transcribe(source, request, on_final, start)
    except StreamerError as e:
        if not response.prepared:  # refused before the first event: an ordinary error answer
            return error_response(e)
        kind = "invalid_request_error" if e.status < 500 else "server_error"
        last: dict[str, Any] = {"error": {"message": e.message, "type": kind, "code": e.code, "param": None}}
    except ClientGoneError:
        upload.left()
        return response  # nobody to finish it for
    else:
        last = {"type": "transcript.text.done", "text": " ".join(texts)}
    with contextlib.suppress(ConnectionError):  # the client left as it ended
        await send(last)
        await response.write_eof()
    return response


def _answer(form: Form, finals: list[TranscriptFinal], seconds: float) -> web.Response:
    text = " ".join(f.text for f in finals)
    usage = {"type": "duration", "seconds": round(seconds, 3)}
    if form.response_format == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if form.response_format in ("srt", "vtt"):
        return web.Response(
            text=_captions(finals, vtt=form.response_format == "vtt"), content_type="text/plain"
        )
    if form.response_format == "json":
        return web.json_response({"text": text, "usage": usage})
    if form.response_format == openai_diarized.FORMAT:
        return web.json_response(openai_diarized.diarized(finals, seconds, usage))
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": finals[0].language if finals else "",
        "duration": round(seconds, 3),
        "text": text,
        "usage": usage,
    }
    if not form.granularities or "segment" in form.granularities:
        body["segments"] = [
            {
                "id": i,
                "seek": 0,
                "start": f.audio_start_ms / 1000,
                "end": f.audio_end_ms / 1000,
                "text": f.text,
                "tokens": [],
                "temperature": 0.0,
            }
            for i, f in enumerate(finals)
        ]
    if "word" in form.granularities:
        words: list[Word] = [w for f in finals for w in (f.words or [])]
        body["words"] = [{"word": w.word, "start": w.start_ms / 1000, "end": w.end_ms / 1000} for w in words]
    return web.json_response(body)


def _timestamp(ms: int, vtt: bool) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{'.' if vtt else ','}{millis:03d}"


def _captions(finals: list[TranscriptFinal], *, vtt: bool) -> str:
    blocks = []
    for i, f in enumerate(finals, start=1):
        span = f"{_timestamp(f.audio_start_ms, vtt)} --> {_timestamp(f.audio_end_ms, vtt)}"
        blocks.append(f"{span}\n{f.text}\n" if vtt else f"{i}\n{span}\n{f.text}\n")
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(blocks)


ROUTES = [web.post("/v1/audio/transcriptions", transcriptions)]
