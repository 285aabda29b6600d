"""OpenAI Realtime, transcription sessions: ``GET /v1/realtime?intent=transcription`` (WebSocket), and its
routes: ``POST /v1/realtime/client_secrets`` and the older beta ``POST /v1/realtime/transcription_sessions``
(those two issue client secrets: :mod:`streamer.adapters.openai.client_secrets`).

The connection reads its client's events (:mod:`streamer.adapters.openai.wire`) into session calls;
what it sends is made by its :class:`~streamer.adapters.openai.render.EventRenderer`. The session shape is
the GA one, or the beta one (``transcription_session.*``) when the client sends ``OpenAI-Beta:
realtime=v1``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError

from streamer import tracing
from streamer.adapters.common import (
    AdapterConnection,
    retune,
)
from streamer.adapters.openai.client_secrets import authenticate, client_secrets, transcription_sessions
from streamer.adapters.openai.render import EventRenderer
from streamer.adapters.openai.rest import error_response
from streamer.adapters.openai.state import DIARIZE_MODEL, RealtimeState
from streamer.adapters.openai.wire import (
    CLIENT_EVENTS,
    Append,
    BetaSessionUpdate,
    BufferEvent,
    ClientEventError,
    SessionUpdate,
    invalid,
    json_object,
    new_id,
)
from streamer.edge.credentials import offered_subprotocols
from streamer.edge.handshake import REGISTRY, REQUEST_ID, check_origin
from streamer.edge.upgrade import socket_response, upgrade
from streamer.errors import (
    ConfigError,
    FrameTooLargeError,
    StreamerError,
    UnsupportedLanguageError,
)
from streamer.pipeline.audio import max_frame_bytes
from streamer.protocol import (
    MAX_SAMPLE_RATE,
    MAX_TEXT_BYTES,
    ServerMessage,
    TranscriptFinal,
    TranslationFinal,
)
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

# An append carries up to MAX_APPEND_S of audio (OpenAI allows 15 MiB of base64 an event; a bound that
# large would let each of 64 sessions hold ~26 MiB in flight): 10 s at 48 kHz is 960,000 bytes, 1.28 MB of
# base64, cut into the session's frames inside. It is also the pacer's default burst, so an append of the
# largest size is admitted at once.
MAX_APPEND_S = 10
MAX_APPEND_BYTES = max_frame_bytes(MAX_SAMPLE_RATE, MAX_APPEND_S * 1000)
MAX_APPEND_TEXT = 4 * -(-MAX_APPEND_BYTES // 3) + MAX_TEXT_BYTES  # its base64 and the event around it
# beyond twice that aiohttp refuses (1009) before buffering; below, the text guard or the append answers
WS_MAX_MSG = 2 * MAX_APPEND_TEXT
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
MIN_COMMIT_MS = 100
QUERY_OPTIONS = frozenset({"intent", "model"})  # model: any name, served by the one model


# ---- the socket


async def realtime(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime?intent=transcription``: a transcription session in OpenAI's Realtime shape."""
    started = tracing.now()  # the session.start span: from here to admission
    registry = request.app[REGISTRY]
    services = registry.services
    offered = offered_subprotocols(request)
    beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "") or BETA_SUBPROTOCOL in offered
    try:
        check_origin(request)
        key, state, beta_secret = await authenticate(request, services)
        unknown = next((name for name in request.query if name not in QUERY_OPTIONS), None)
        if unknown is not None:  # refused, never ignored (docs/api-openai.md)
            raise ClientEventError(
                f"unknown query parameter {unknown[:64]!r}", code="unknown_parameter", param=unknown[:64]
            )
        if state is None and request.query.get("intent") != "transcription":
            raise ClientEventError(
                "this server serves transcription sessions only: connect with ?intent=transcription",
                code="invalid_value",
                param="intent",
            )
        state = state or RealtimeState()
        session = await registry.admit(key, state.config(services))
    except StreamerError as e:
        services.metrics.refused(e)
        return error_response(e)
    session.trace = tracing.session_started(
        session.trace, session.session_id, request.get(REQUEST_ID, ""), started, surface="openai"
    )
    ws = socket_response(("realtime",) if "realtime" in offered else (), WS_MAX_MSG)
    transport = await upgrade(request, ws, lambda: registry.release(session))
    retune(session, state.turns)
    await RealtimeConnection(registry, ws, session, state, beta or beta_secret, transport).run()
    return ws


class RealtimeConnection(AdapterConnection):
    surface = "openai"

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        state: RealtimeState,
        beta: bool,
        transport: asyncio.Transport | None = None,
    ) -> None:
        super().__init__(registry, ws, session, transport)
        self.beta = beta
        self.events = EventRenderer(state, beta)

    @property
    def state(self) -> RealtimeState:
        """What the session is set to: its latest accepted update."""
        return self.events.state

    # ---- events out

    def render(self, message: ServerMessage) -> list[str]:
        return self.events.render(message, session_failed=self.session.failure is not None)

    async def opening(self, replay: Sequence[TranscriptFinal | TranslationFinal], resumed: bool) -> None:
        await self.reply(lambda: self.events.session_event("created", self.beta))

    async def report(self, e: StreamerError) -> None:
        event_id, param = self.events.take_refused()
        if isinstance(e, ClientEventError):
            event_id, param = e.event_id or event_id, e.param or param
        kind = "invalid_request_error" if e.status < 500 else "server_error"
        error = {"type": kind, "code": e.code, "message": e.message, "param": param, "event_id": event_id}
        await self.reply(lambda: self.events.event("error", error=error))

    def recoverable(self, e: StreamerError) -> bool:
        return super().recoverable(e) or isinstance(e, FrameTooLargeError)

    def idle_timeout_s(self) -> float | None:
        """None: OpenAI's protocol has no keep-alive message, so a push-to-talk client silent for minutes
        is not idle. The socket's heartbeat (a ping every 20 s, answered by every WebSocket client) cuts a
        peer that has gone, and the session's length still bounds the rest."""
        return None

    def max_text_bytes(self) -> int:
        """An append carries audio as base64: room for the largest append at any rate, and the event."""
        return MAX_APPEND_TEXT

    def max_audio_bytes(self) -> int:
        """An append of up to :data:`MAX_APPEND_S` of audio at the session's rate and encoding."""
        pcm = self.session.pcm
        return max_frame_bytes(pcm.sample_rate, MAX_APPEND_S * 1000, pcm.encoding)

    # ---- events in

    async def on_text(self, data: str | bytes) -> bool:
        raw = json_object(data, "the event")
        event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
        kind = raw.get("type")
        model = CLIENT_EVENTS.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise ClientEventError(
                f"unknown or unsupported event type {kind!r} in a transcription session; supported: "
                + ", ".join(CLIENT_EVENTS),
                code="invalid_value",
                param="type",
                event_id=event_id,
            )
        try:
            event = model.model_validate(raw)
        except ValidationError as e:
            raise invalid(e, event_id) from e
        try:
            if isinstance(event, Append):
                await self._append(event)
            elif isinstance(event, BufferEvent) and event.type == "input_audio_buffer.commit":
                await self._commit(event)
            elif isinstance(event, BufferEvent):
                await self._clear()
            elif isinstance(event, SessionUpdate | BetaSessionUpdate):
                await self._update(event)
        except StreamerError:
            # whatever refuses it (a limit, the quota, the session), the error names the client's event
            self.events.refusing(event_id, "audio" if isinstance(event, Append) else None)
            raise
        return False

    async def _append(self, event: Append) -> None:
        try:
            audio = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ClientEventError(
                "audio is not valid base64", code="invalid_value", param="audio", event_id=event.event_id
            ) from e
        pcm = self.session.pcm
        if len(audio) % pcm.sample_bytes:
            raise ClientEventError(
                "audio/pcm is 16-bit PCM: an even number of bytes",
                code="invalid_value",
                param="audio",
                event_id=event.event_id,
            )
        try:
            await self.push_audio(audio)
        except FrameTooLargeError as e:
            raise ClientEventError(e.message, code=e.code, param="audio", event_id=event.event_id) from e

    async def _commit(self, event: BufferEvent) -> None:
        # the buffer holds what was appended since the last commit, the client's or the server VAD's
        if self.buffered_ms() < MIN_COMMIT_MS:
            raise ClientEventError(
                f"buffer too small: at least {MIN_COMMIT_MS} ms of audio must be appended before a commit",
                code="input_audio_buffer_commit_empty",
                event_id=event.event_id,
            )
        await self.flush_audio()
        if self.session.open_segment_id is not None:
            await self.session.commit("commit")  # its speech_stopped commits the item
            self.emptied()
            return
        self.emptied()
        # no speech in the buffer: an item with an empty transcript, as OpenAI answers silence
        item_id = new_id("item")
        await self.reply(
            lambda: self.events.committed(item_id), lambda: self.events.completed(item_id, "", 0.0)
        )

    async def _clear(self) -> None:
        """Drop the audio not yet committed: the open utterance is forgotten, not transcribed."""
        self.reframer.clear()
        open_id = await self.session.clear()  # under the session's lock: nothing transcribes it
        if open_id is not None:
            self.events.forget(open_id)
        self.emptied()
        await self.reply(lambda: self.events.event("input_audio_buffer.cleared"))

    async def _update(self, event: SessionUpdate | BetaSessionUpdate) -> None:
        try:
            if isinstance(event, SessionUpdate):
                audio_in = event.session.audio.input if event.session.audio else None
                explicit = audio_in is not None and "turn_detection" in audio_in.model_fields_set
                state = self.state.updated_ga(event.session, explicit)
            else:
                state = self.state.updated_beta(event.session)
            config = state.config(self.services)
            if config.diarize and self.services.speakers is None:
                where = (
                    "audio.input.transcription"
                    if isinstance(event, SessionUpdate)
                    else "input_audio_transcription"
                )
                raise ClientEventError(
                    f"{DIARIZE_MODEL}: diarize is not available, the server has no speaker encoder",
                    code="invalid_value",
                    param=f"session.{where}.model",
                    event_id=event.event_id,
                )
            if state.turns != self.state.turns:
                retune(self.session, state.turns)
        except ClientEventError as e:
            e.event_id = event.event_id
            raise
        except UnsupportedLanguageError as e:
            where = (
                "audio.input.transcription"
                if isinstance(event, SessionUpdate)
                else "input_audio_transcription"
            )
            raise ClientEventError(
                e.message, code=e.code, param=f"session.{where}.language", event_id=event.event_id
            ) from e
        except ConfigError as e:  # turn detection changed mid-utterance
            where = "audio.input.turn_detection" if isinstance(event, SessionUpdate) else "turn_detection"
            raise ClientEventError(
                e.message, code=e.code, param=f"session.{where}", event_id=event.event_id
            ) from e
        if config != self.session.config:
            await self.session.update_config(config)  # the turn rules carry over a new rate
        self.events.state = state
        # the reply follows the event's shape, whatever the connection's header said
        beta = isinstance(event, BetaSessionUpdate)
        await self.reply(lambda: self.events.session_event("updated", beta))


ROUTES = [
    web.get("/v1/realtime", realtime),
    web.post("/v1/realtime/client_secrets", client_secrets),
    web.post("/v1/realtime/transcription_sessions", transcription_sessions),
]
