"""Deepgram pre-recorded transcription: ``POST /v1/listen`` with the audio as the request body.

The body is spooled, then decoded a piece at a time (any container ``deepgram_audio`` reads, or raw
audio with ``encoding``), each channel streamed through an ordinary session (one per channel with
``multichannel=true``), and the finals answered in Deepgram's response shape. A ``{"url": ...}`` body is
refused: this server fetches nothing. A body that decodes to far more audio than its size can honestly
hold (a bomb) is refused, as is more audio than a session may be long.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from streamer import tracing
from streamer.adapters.deepgram_audio import ALL_CONTAINERS, AudioInput
from streamer.adapters.deepgram_options import (
    DeepgramRequestError,
    ListenOptions,
    admit_channels,
    authenticate,
    error_response,
    from_domain,
)
from streamer.adapters.deepgram_render import alternative, model_info, seconds
from streamer.adapters.upload import UploadRun
from streamer.errors import InvalidAudioError, SessionLimitError, StreamerError
from streamer.protocol import TranscriptFinal
from streamer.session.edge import REGISTRY, REQUEST_ID
from streamer.session.quota import AudioQuota

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
        options = ListenOptions.parse(request.query, services)
    except DeepgramRequestError as e:
        return error_response(e, request_id)
    except StreamerError as e:
        services.metrics.refused(e)
        return error_response(from_domain(e), request_id)
    audio = AudioInput(options.audio, containers=ALL_CONTAINERS)
    quota = AudioQuota(services, key.key_id)
    try:
        async with contextlib.AsyncExitStack() as stack:

            async def open_channels(count: int) -> list[UploadRun]:
                """The sessions, once the audio has said how many channels it has."""
                try:
                    sessions = await admit_channels(registry, key, options, count)
                except StreamerError as e:
                    services.metrics.refused(e)
                    raise
                sessions[0].trace = tracing.session_started(
                    sessions[0].trace,
                    sessions[0].session_id,
                    request.get(REQUEST_ID, ""),
                    started,
                    surface="deepgram",
                    deepgram_request_id=request_id,
                )
                return [await stack.enter_async_context(UploadRun(registry, s)) for s in sessions]

            body = await _Body(request, audio, quota, services.settings.max_session_s, open_channels).read()
            finals = await asyncio.gather(*(run.finish() for run in body.runs))
    except DeepgramRequestError as e:
        return error_response(e, request_id)
    except StreamerError as e:
        return error_response(from_domain(e), request_id)
    finally:
        audio.close()
        registry.spawn(quota.settle(), f"settle-{request_id}")
    return web.json_response(
        _response(services.asr.name, request_id, options, body, list(finals)),
        headers={"dg-request-id": request_id},
    )


class _Body:
    """The request body, decoded as it arrives and pushed to each channel's session."""

    def __init__(
        self,
        request: web.Request,
        audio: AudioInput,
        quota: AudioQuota,
        max_s: float,
        open_channels: Callable[[int], Awaitable[list[UploadRun]]],
    ) -> None:
        self.request = request
        self.audio = audio
        self.quota = quota
        self.max_s = max_s
        self.open_channels = open_channels
        self.runs: list[UploadRun] = []
        self.rate = audio.format.session_rate
        self.received = 0
        self.seconds = 0.0
        self.sha256 = hashlib.sha256()

    async def read(self) -> _Body:
        """Spool the whole body first (its arrival has a deadline that transcription must not eat into),
        then decode it a piece at a time into the sessions."""
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            async for chunk in self.request.content.iter_chunked(CHUNK_BYTES):
                self.received += len(chunk)
                if self.received > MAX_BODY_BYTES:
                    raise DeepgramRequestError(
                        413, "PAYLOAD_TOO_LARGE", f"the body is larger than {MAX_BODY_BYTES >> 20} MB"
                    )
                self.sha256.update(chunk)
                spool.write(chunk)
            spool.seek(0)
            while chunk := spool.read(CHUNK_BYTES):
                async for channels in self.audio.feed(chunk):
                    await self._push(channels)
        async for channels in self.audio.finish():
            await self._push(channels)
        if not self.runs:
            raise InvalidAudioError("the body holds no audio")
        return self

    async def _push(self, channels: list[bytes]) -> None:
        if not self.runs:
            self.runs = await self.open_channels(len(channels))
        seconds = len(channels[0]) / 2 / self.rate
        self.seconds += seconds
        if self.seconds > self.max_s:
            raise SessionLimitError(f"the audio is longer than the {self.max_s:.0f} s a session may be")
        if self.seconds > FREE_S + self.received / MIN_BYTES_PER_S:
            raise InvalidAudioError(
                f"the audio could not be decoded: {self.received} bytes decode to more than "
                f"{self.seconds:.0f} s of audio (refused as a decompression bomb)"
            )
        await self.quota.charge(seconds * len(channels))
        for run, pcm in zip(self.runs, channels, strict=True):
            await run.push(pcm)


def _response(
    model: str, request_id: str, options: ListenOptions, body: _Body, finals: list[list[TranscriptFinal]]
) -> dict[str, Any]:
    """Deepgram's pre-recorded response: metadata, each channel's transcript, utterances if asked."""
    model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"streamer:{model}"))
    channels = []
    utterances: list[dict[str, Any]] = []
    for index, channel in enumerate(finals):
        text = " ".join(f.text.strip() for f in channel if f.text.strip())
        words = [w for f in channel for w in (f.words or [])]
        channels.append({"alternatives": [alternative(text, words, options.punctuate)]})
        for f in channel:
            if not f.text.strip():
                continue
            said = alternative(f.text, f.words or [], options.punctuate, f.speaker_confidence)
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
        "duration": round(body.seconds, 3),
        "channels": len(finals),
        "models": [model_uuid],
        "model_info": {model_uuid: model_info(model)},
    }
    return {"metadata": metadata, "results": results}
