"""OpenAI audio transcriptions: ``POST /v1/audio/transcriptions`` (multipart), whole files or as events.

The file is decoded by PyAV (WAV, FLAC, MP3, OGG/Opus, WebM, ...) to 16 kHz mono and streamed through an
ordinary protocol v1 session: admitted by the registry (rate, capacity, the key's concurrent sessions),
charged to the key's daily audio quota, cut into utterances by the session's VAD and transcribed by the
shared batcher, with the decode fallback and, for ``timestamp_granularities[]=word``, word alignment. So a
file of any length works, and a model failure is a 503 like everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import IO, Any

import av
import numpy as np
from aiohttp import web

from streamer import tracing
from streamer.adapters.common import check_language
from streamer.adapters.openai_session import bearer_key, error_response
from streamer.adapters.upload_form import Form, read_form
from streamer.errors import InvalidAudioError, SessionLimitError, StreamerError
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.containers import UNDECODABLE, open_input
from streamer.protocol import SessionConfig, TranscriptFinal, Word
from streamer.session.edge import REGISTRY, REQUEST_ID
from streamer.session.outbox import Outbox
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

FRAME_S = 1.0


def decode_audio(source: IO[bytes], max_seconds: float) -> np.ndarray:
    """Any audio file PyAV (FFmpeg) reads, as 16 kHz mono s16 samples."""
    max_samples = int(max_seconds * MODEL_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with open_input(source) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=MODEL_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    total += samples.size
                    if total > max_samples:
                        raise SessionLimitError(
                            f"the audio is longer than the {max_seconds:.0f} s a session may be"
                        )
                    chunks.append(samples)
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except (av.FFmpegError, ValueError, OSError, EOFError) as e:  # FFmpeg's and PyAV's refusals
        raise InvalidAudioError(UNDECODABLE) from e  # one message for all: no oracle of the cause
    if not chunks:
        raise InvalidAudioError("the file holds no audio samples")
    return np.concatenate(chunks).astype("<i2")


@dataclass
class _Upload:
    """The registry's attachment for a session carried by one HTTP request."""

    finals: list[TranscriptFinal] = field(default_factory=list)
    failed: StreamerError | None = None
    fatal: asyncio.Event = field(default_factory=asyncio.Event)

    async def hand_over(self) -> None:
        return None  # nothing resumes an upload's session

    async def shutdown(self) -> None:
        return None  # the request finishes its own file (the server's shutdown timeout bounds it)


async def transcriptions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/audio/transcriptions``."""
    started = tracing.now()  # the session.start span: from here to admission
    registry = request.app[REGISTRY]
    services = registry.services
    try:
        key = await bearer_key(request, services)
        form = await read_form(request)
        assert form.file is not None
        with contextlib.closing(form.file):
            audio = await asyncio.to_thread(decode_audio, form.file, services.settings.max_session_s)
        config = SessionConfig(
            sample_rate=MODEL_RATE,
            language=check_language(services, form.language),
            interim_results=False,
            word_timestamps="word" in form.granularities,
        )
        session = await registry.admit(key, config)
    except StreamerError as e:
        services.metrics.refused(e)
        return error_response(e)
    session.trace = tracing.session_started(
        session.trace, session.session_id, request[REQUEST_ID], started, surface="transcriptions"
    )
    if form.stream:
        return await _stream(request, registry, session, audio, form)
    try:
        finals = await _transcribe(registry, session, audio, None)
    except StreamerError as e:
        return error_response(e)
    return _answer(form, finals, audio.size / MODEL_RATE)


async def _transcribe(
    registry: SessionRegistry,
    session: StreamSession,
    audio: np.ndarray,
    on_final: Any,
) -> list[TranscriptFinal]:
    """Feed the whole file through ``session`` and return its finals (``on_final`` hears each one)."""
    services = registry.services
    upload = _Upload()

    async def collect(text: str) -> None:
        message = json.loads(text)
        if message.get("type") == "transcript.final":
            final = TranscriptFinal.model_validate(message)
            upload.finals.append(final)
            if on_final is not None:
                await on_final(final)

    def fail(e: StreamerError) -> None:
        upload.failed = e
        upload.fatal.set()

    outbox = Outbox(collect, maxsize=services.settings.session_out_queue)
    registry.attach(session, upload, outbox)
    session.on_fatal = fail
    quota = AudioQuota(services, session.key_id)
    writer = asyncio.create_task(outbox.run())
    feeding = asyncio.create_task(_feed(session, quota, audio))
    fatal = asyncio.create_task(upload.fatal.wait())
    try:
        await asyncio.wait({feeding, fatal}, return_when=asyncio.FIRST_COMPLETED)
        if upload.failed is not None:
            raise upload.failed
        await feeding  # its own error (a quota refusal) is the answer
        await outbox.finish()
        await asyncio.wait({writer})
        return upload.finals
    finally:
        for task in (feeding, fatal, writer):
            task.cancel()
        await asyncio.wait({feeding, fatal, writer})
        outbox.abandon()
        registry.spawn(quota.settle(), f"settle-{session.session_id}")
        await asyncio.shield(registry.detach(session, upload, ended=True))  # see SessionSocket.run


async def _feed(session: StreamSession, quota: AudioQuota, audio: np.ndarray) -> None:
    step = int(FRAME_S * MODEL_RATE)
    for i in range(0, audio.size, step):
        frame = audio[i : i + step]
        if frame.size < session.pcm.min_frame_bytes // 2:
            frame = np.pad(frame, (0, session.pcm.min_frame_bytes // 2 - frame.size))
        await quota.charge(frame.size / MODEL_RATE)
        await session.push_audio(frame.astype("<i2").tobytes())
    await session.drain()


async def _stream(
    request: web.Request, registry: SessionRegistry, session: StreamSession, audio: np.ndarray, form: Form
) -> web.StreamResponse:
    """``stream=true``: a ``transcript.text.delta`` event per utterance, then ``transcript.text.done``."""
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Request-ID": request[REQUEST_ID],
    }
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    texts: list[str] = []

    async def send(event: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(event)}\n\n".encode())

    async def on_final(final: TranscriptFinal) -> None:
        delta = final.text if not texts else " " + final.text
        texts.append(final.text)
        await send({"type": "transcript.text.delta", "delta": delta})

    try:
        await _transcribe(registry, session, audio, on_final)
    except StreamerError as e:
        kind = "invalid_request_error" if e.status < 500 else "server_error"
        await send({"error": {"message": e.message, "type": kind, "code": e.code, "param": None}})
    else:
        await send({"type": "transcript.text.done", "text": " ".join(texts)})
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
