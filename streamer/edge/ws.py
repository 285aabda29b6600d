"""``GET /v1/stream``: the WebSocket edge.

Authentication happens before the upgrade (a bad token is an HTTP 401, never an open socket). Then the
connection (a :class:`SessionSocket`, whose reader, writer and guards every surface shares) reads protocol
v1 messages and drives the session; domain errors become an ``error`` event followed by the contract's
close code, after whatever was already accepted has been finalized and delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web

from streamer import tracing
from streamer.edge.credentials import offered_subprotocols
from streamer.edge.handshake import (
    REGISTRY,
    REQUEST_ID,
    check_origin,
    error_response,
    redeem_token,
    session_limits,
)
from streamer.edge.socket import SessionSocket
from streamer.edge.upgrade import socket_response, upgrade
from streamer.errors import AuthError, BadRequestError, ConfigError, RateLimitedError, StreamerError
from streamer.pipeline.audio import max_frame_bytes
from streamer.pipeline.container_input import ContainerInput
from streamer.pipeline.streaming import AudioStreamError
from streamer.protocol import (
    MAX_SAMPLE_RATE,
    PROTOCOL_SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    CloseCode,
    InputAudioCommit,
    Ping,
    Pong,
    SessionClose,
    SessionCreated,
    SessionUpdate,
    TranscriptFinal,
    TranslationFinal,
)
from streamer.session.durable import ResentAudio, kept_pacer
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession
from streamer.session.validation import apply_update, check_session_config, parse_client_message

# The largest legal message is one binary frame of max_frame_ms at 48 kHz (96,000 bytes for 1 s). aiohttp
# refuses (1009) anything beyond twice that before buffering it; below, the session's own limit answers.
WS_MAX_MSG = 2 * max_frame_bytes(MAX_SAMPLE_RATE, 1000)


def _token_from(request: web.Request) -> tuple[str | None, bool]:
    """The token from ``?token=`` or the ``token.<jwt>`` subprotocol; and whether subprotocols were used."""
    for proto in offered_subprotocols(request):
        if proto.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return proto[len(TOKEN_SUBPROTOCOL_PREFIX) :], True
    return request.query.get("token"), False


async def stream_handler(request: web.Request) -> web.StreamResponse:
    started = tracing.now()  # the session.start span: from here to admission
    registry = request.app[REGISTRY]
    services = registry.services
    try:
        check_origin(request)
        token, via_subprotocol = _token_from(request)
        if not token:
            raise AuthError("a session token is required (?token= or the token.<jwt> subprotocol)")
        grant = await redeem_token(services, token)
        last_seq = _last_seq(request) if grant.resume else None
        audio_from_ms = _audio_from_ms(request) if grant.resume else None
        if grant.resume:
            session = await registry.resume(grant.session_id, grant.key_id)
        else:
            session = registry.open(grant.session_id, grant.key_id, grant.config)
        session.trace = tracing.session_started(
            session.trace, grant.session_id, request.get(REQUEST_ID, ""), started, resumed=grant.resume
        )
    except StreamerError as e:
        services.metrics.refused(e)
        return error_response(e)
    ws = socket_response(
        (PROTOCOL_SUBPROTOCOL,) if via_subprotocol else (),
        max(WS_MAX_MSG, 2 * max_frame_bytes(MAX_SAMPLE_RATE, services.settings.max_frame_ms)),
        decode_text=False,  # undecodable text is our bad_request, not aiohttp's 1007 close
    )

    async def give_back() -> None:
        if grant.resume:
            await registry.repark(session)  # resumable again
        else:
            await registry.release(session)  # its key's slot, not held until it expires

    transport = await upgrade(request, ws, give_back)
    connection = Connection(registry, ws, session, transport)
    durable = registry.durable
    received_ms = durable.received_ms(session) if durable is not None else None
    connection.resent = ResentAudio(session, audio_from_ms, received_ms)
    connection.pacer = kept_pacer(
        session, connection.pacer, durable.pacer_left_s(session) if durable else None
    )
    await connection.run(last_seq)
    return ws


def _last_seq(request: web.Request) -> int:
    raw = request.query.get("last_seq", "0")
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequestError("last_seq must be a non-negative integer")
    return int(raw)


def _audio_from_ms(request: web.Request) -> int | None:
    """Where the audio a resuming client sends again starts, in session time (docs/protocol.md)."""
    raw = request.query.get("audio_from_ms")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise BadRequestError("audio_from_ms must be a non-negative integer")
    return int(raw)


class Connection(SessionSocket):
    """One accepted ``/v1/stream`` socket: protocol v1 messages, and audio a resume sends again."""

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        transport: asyncio.Transport | None = None,
    ) -> None:
        super().__init__(registry, ws, session, transport)
        self.resent = ResentAudio(session, None)  # a resume's re-sent audio (set by the handler)
        self.container: ContainerInput | None = None  # a container encoding's stream, from its first byte

    async def opening(self, replay: Sequence[TranscriptFinal | TranslationFinal], resumed: bool) -> None:
        settings, session = self.services.settings, self.session
        limits = session_limits(settings, session.config.sample_rate, session.key_id, session.config.encoding)
        await self.outbox.put(
            SessionCreated(session_id=self.session_id, config=session.config, limits=limits, resumed=resumed)
        )
        for message in replay:
            await self.outbox.put(message)

    async def run(self, last_seq: int | None = None) -> None:
        try:
            await super().run(last_seq)
        finally:
            if self.container is not None:
                self.container.close()

    def recoverable(self, e: StreamerError) -> bool:
        # a container stream that cannot be decoded cannot go on: unlike one bad raw frame, it ends
        return super().recoverable(e) and not isinstance(e, AudioStreamError)

    async def on_binary(self, data: bytes) -> None:
        """A frame of any whole number of samples in the session's encoding, or a container stream's next
        bytes (decoded off the loop); limited in audio seconds either way."""
        pcm = self.session.pcm
        pcm.validate(data)
        if not pcm.encoding.contained:
            await self._accept(data)
            return
        if self.container is None:  # this connection's stream (a resume starts a new one)
            pcm_bytes = max_frame_bytes(pcm.sample_rate, self.services.settings.max_frame_ms)
            self.container = ContainerInput(pcm.encoding, pcm.sample_rate, pcm_bytes)
        async for piece in self.container.feed(data):
            await self._accept(piece)

    async def _accept(self, frame: bytes) -> None:
        """Audio in the session's sample format: paced, trimmed of a resume's repeat, charged, pushed."""
        pcm = self.session.pcm
        seconds = pcm.seconds(frame)
        if not self.resent.exempt(seconds) and not self.pacer.admit(seconds):
            raise RateLimitedError(
                f"audio is arriving faster than {self.services.settings.max_realtime_factor:g}x real time",
                code="audio_rate_exceeded",
            )
        frame = self.resent.trim(frame, pcm.sample_bytes)  # what the session transcribed already
        if not frame:
            return
        await self.quota.charge(pcm.seconds(frame))
        await self.session.push_audio(frame)

    async def _decoded(self, end: bool) -> None:
        """What the container's bytes so far decode to (``end``: the stream is over, all of it)."""
        if self.container is None:
            return
        async for piece in self.container.finish() if end else self.container.feed(b""):
            await self._accept(piece)

    async def on_text(self, data: str | bytes) -> bool:
        message = parse_client_message(data)
        if isinstance(message, Ping):
            await self.outbox.put(Pong(id=message.id))
        elif isinstance(message, InputAudioCommit):
            await self._decoded(end=False)
            await self.session.commit()
        elif isinstance(message, SessionUpdate):
            config = apply_update(message.config, self.session.config)
            check_session_config(self.services, config)
            session = self.session
            started = session.pcm.samples_in or session.audio_ms or self.container is not None
            if config.encoding != session.config.encoding and started:
                # the stream (and a resume's re-sent audio) is one encoding from its first byte
                raise ConfigError("encoding can change only before the first audio frame")
            if config.sample_rate != session.config.sample_rate and self.container is not None:
                # the container's decoder resamples to the rate it started with
                raise ConfigError("a container's sample_rate can change only before the first audio")
            await self.session.update_config(config)
        elif isinstance(message, SessionClose):
            await self._decoded(end=True)  # what the container decoder still holds, then the end
            self.finish("client_closed", CloseCode.NORMAL)  # the end drains, delivers and closes
            return True
        return False
