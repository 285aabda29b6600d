"""Deepgram pre-recorded transcription: ``POST /v1/listen`` with the audio as the request body.

The request goes through the same runner as OpenAI's uploads (:mod:`streamer.adapters.upload_runner`):
admitted before its body is read (the key's session rate, its uploads in progress, its audio quota left,
capacity, its concurrent-session slot), the slots kept alive while it runs, the audio fed to its
sessions paced and charged, stopped at the quota left and at the session's length, a 503 on shutdown,
stopped when the client leaves. Here only the body and the answer are Deepgram's: the body is spooled,
then decoded a piece at a time (any container ``audio`` reads, or raw audio with ``encoding``),
each channel through its own session with ``multichannel=true`` (the further channels admitted when the
audio says how many it has), and the finals answered in Deepgram's response shape. A ``{"url": ...}``
body is refused: this server fetches nothing. A body that decodes to far more audio than its size can
honestly hold (a bomb) is refused.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from aiohttp import web

from streamer import tracing
from streamer.adapters.common import Turns, retune
from streamer.adapters.deepgram.audio import ALL_CONTAINERS, AudioInput
from streamer.adapters.deepgram.options import (
    DeepgramRequestError,
    ListenOptions,
    admit_channels,
    authenticate,
    error_response,
    from_domain,
    session_config,
    traced,
)
from streamer.adapters.deepgram.render import alternative, model_info, seconds
from streamer.adapters.upload import Upload
from streamer.adapters.upload_runner import Channels, ClientGoneError, Ticket, admitted
from streamer.edge.handshake import REGISTRY
from streamer.errors import InvalidAudioError, StreamerError
from streamer.protocol import TranscriptFinal
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession
from streamer.session.validation import check_session_config

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 25 << 20  # as /v1/audio/transcriptions: it must arrive within STREAMER_BODY_TIMEOUT_S
SPOOL_BYTES = 4 << 20  # larger bodies spill to a temporary file
CHUNK_BYTES = 1 << 16
# honest audio costs bytes: Opus, the leanest speech codec, never goes below ~6 kbit/s (750 B/s).
# Audio beyond a minute that averages less than 500 B/s is a few KiB claiming hours: a bomb.
MIN_BYTES_PER_S = 500
FREE_S = 60.0


async def transcribe(request: web.Request) -> web.StreamResponse:
    """``POST /v1/listen``: ``listen.v1.media.transcribe_file``."""
    started = tracing.now()
    registry = request.app[REGISTRY]
    services = registry.services
    request_id = str(uuid.uuid4())
    try:
        key, _ = await authenticate(request, services)
        if request.content_type == "application/json":
            raise DeepgramRequestError(
                400,
                "BAD_REQUEST",
                "a JSON body (a {url} to fetch) is not supported: this server fetches nothing; "
                "send the audio itself as the request body",
            )
        options = ListenOptions.parse(request.query, services, prerecorded=True)
        async with admitted(registry, key) as ticket:

            async def open_channels(count: int) -> list[StreamSession]:
                """The sessions, once the audio has said how many channels it has."""
                sessions = await _open(registry, ticket, options, count)
                traced(sessions, request, started, request_id)
                return sessions

            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
                body = await _spool(request, spool)
                audio = AudioInput(options.audio, containers=ALL_CONTAINERS)
                try:
                    async with Upload(registry, ticket, open_channels) as upload:
                        rate = audio.format.session_rate
                        finals = await upload.transcribe(_channels(spool, audio, body), rate, request)
                finally:
                    audio.close()
    except DeepgramRequestError as e:
        return error_response(e, request_id)
    except StreamerError as e:
        services.metrics.refused(e)
        return error_response(from_domain(e), request_id)
    except ClientGoneError:
        log.info("the client left; its upload stopped (request %s)", request_id)
        return web.Response(status=499)  # nobody reads it (nginx's "client closed request")
    return web.json_response(
        _response(services.asr.name, request_id, options, body, upload.seconds, finals),
        headers={"dg-request-id": request_id},
    )


async def _open(
    registry: SessionRegistry, ticket: Ticket, options: ListenOptions, count: int
) -> list[StreamSession]:
    """One session per channel (all or none): the first on the ticket's reserved slot, the others
    admitted as a live socket's further channels are."""
    config = session_config(registry.services, options)
    check_session_config(registry.services, config)
    first = registry.open(ticket.session_id, ticket.key.key_id, config)
    retune(first, Turns(end_silence_ms=options.endpointing_ms))
    try:
        return [first, *await admit_channels(registry, ticket.key, options, count - 1)]
    except BaseException:
        await registry.release(first)
        raise


@dataclass
class _Body:
    """What the response's metadata says of the body: its size and hash."""

    received: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)


async def _spool(request: web.Request, spool: IO[bytes]) -> _Body:
    """The whole body first (its arrival has a deadline that transcription must not eat into)."""
    body = _Body()
    async for chunk in request.content.iter_chunked(CHUNK_BYTES):
        body.received += len(chunk)
        if body.received > MAX_BODY_BYTES:
            raise DeepgramRequestError(
                413, "PAYLOAD_TOO_LARGE", f"the body is larger than {MAX_BODY_BYTES >> 20} MB"
            )
        body.sha256.update(chunk)
        spool.write(chunk)
    spool.seek(0)
    return body


async def _channels(spool: IO[bytes], audio: AudioInput, body: _Body) -> AsyncGenerator[Channels, None]:
    """The spooled body decoded a piece at a time, only as fast as the runner takes it; a bomb refused."""
    rate = audio.format.session_rate
    decoded_s = 0.0
    while True:
        chunk = spool.read(CHUNK_BYTES)
        async for channels in audio.feed(chunk) if chunk else audio.finish():
            decoded_s += len(channels[0]) / 2 / rate
            if decoded_s > FREE_S + body.received / MIN_BYTES_PER_S:
                raise InvalidAudioError(
                    f"the audio could not be decoded: {body.received} bytes decode to more than "
                    f"{decoded_s:.0f} s of audio (refused as a decompression bomb)"
                )
            yield channels
        if not chunk:
            return


def _response(
    model: str,
    request_id: str,
    options: ListenOptions,
    body: _Body,
    duration: float,
    finals: list[list[TranscriptFinal]],
) -> dict[str, Any]:
    """Deepgram's pre-recorded response: metadata, each channel's transcript, utterances if asked."""
    model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"streamer:{model}"))
    channels = []
    utterances: list[dict[str, Any]] = []
    for index, channel in enumerate(finals):
        text = " ".join(f.text.strip() for f in channel if f.text.strip())
        words = [w for f in channel for w in (f.words or [])]
        out: dict[str, Any] = {"alternatives": [alternative(text, words, options.text_format)]}
        detected = [f.language for f in channel if f.language_probability is not None and f.text.strip()]
        if detected:  # language=multi: the language of most utterances, as Deepgram's detect_language
            out["detected_language"] = max(detected, key=detected.count)
        channels.append(out)
        for f in channel:
            if not f.text.strip():
                continue
            said = alternative(f.text, f.words or [], options.text_format, f.speaker_confidence)
            utterances.append(
                {
                    "start": seconds(f.audio_start_ms),
                    "end": seconds(max(f.audio_end_ms, f.words[-1].end_ms if f.words else 0)),
                    "confidence": said["confidence"],
                    "channel": index,
                    "transcript": said["transcript"],
                    "words": said["words"],
                    "id": str(uuid.uuid4()),
                    **({"speaker": f.speaker} if f.speaker is not None else {}),  # diarize
                    **({"languages": [f.language]} if f.language_probability is not None else {}),  # multi
                }
            )
    results: dict[str, Any] = {"channels": channels}
    if options.utterances:
        results["utterances"] = sorted(utterances, key=lambda u: (u["start"], u["channel"]))
    metadata = {
        "transaction_key": "deprecated",
        "request_id": request_id,
        "sha256": body.sha256.hexdigest(),
        "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "duration": round(duration, 3),
        "channels": len(finals),
        "models": [model_uuid],
        "model_info": {model_uuid: model_info(model)},
    }
    return {"metadata": metadata, "results": results}
