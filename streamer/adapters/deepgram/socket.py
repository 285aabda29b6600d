"""Deepgram live transcription: ``GET /v1/listen`` (WebSocket).

The query options become a protocol v1 session config (one session per channel with
``multichannel=true``) and a way of cutting utterances; the audio, raw or containerized, is decoded as it
arrives (``audio``); each protocol v1 message is rendered as Deepgram renders results
(``render``). Failures before the upgrade (credentials, capacity, quota) are HTTP statuses with
Deepgram's error body; a bad option or undecodable audio after it is a close frame with a reason.
Pre-recorded ``POST /v1/listen`` is ``rest``, temporary tokens ``grant``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid

from aiohttp import web

from streamer import tracing
from streamer.adapters.common import AdapterConnection
from streamer.adapters.deepgram.audio import AudioInput
from streamer.adapters.deepgram.channels import ChannelSession
from streamer.adapters.deepgram.options import (
    ListenOptions,
    admit_channels,
    authenticate,
    error_response,
    from_domain,
    traced,
)
from streamer.adapters.deepgram.query import close_prefix
from streamer.adapters.deepgram.render import ResultRenderer
from streamer.edge.handshake import REGISTRY, check_origin
from streamer.edge.upgrade import socket_response, upgrade
from streamer.errors import BadRequestError, SessionIdleError, StreamerError
from streamer.guards.keys import KeyRecord
from streamer.pipeline.audio import pieces
from streamer.pipeline.streaming import AudioStreamError
from streamer.protocol import CloseCode, ServerMessage
from streamer.services import Services
from streamer.session.ending import STOPPED, Ending
from streamer.session.outbox import Reply
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

WS_MAX_MSG = 1 << 20  # aiohttp closes (1009) past this; below it the session's frame limit answers
IDLE_S = 10.0  # Deepgram closes a stream that sent no audio and no KeepAlive for this long (NET-0001)


class DeepgramIdleError(SessionIdleError):
    """Deepgram's idle close: ``NET-0001`` with code 1011, as Deepgram documents it."""

    close_code = CloseCode.INTERNAL_ERROR


# ---- the socket


async def listen(request: web.Request) -> web.StreamResponse:
    """``GET /v1/listen``: a live session rendered as Deepgram's streaming API."""
    started = tracing.now()  # the session.start span: from here to admission
    registry = request.app[REGISTRY]
    services = registry.services
    request_id = str(uuid.uuid4())
    try:
        check_origin(request)
        key, answer = await authenticate(request, services)
    except StreamerError as e:
        services.metrics.refused(e)
        return error_response(from_domain(e), request_id)
    try:
        options = ListenOptions.parse(request.query, services)
    except StreamerError as e:
        # before the upgrade, as Deepgram refuses a bad option: 400 with the reason in dg-error
        services.metrics.refused(e)
        return error_response(from_domain(e), request_id)
    try:
        sessions = await admit_channels(registry, key, options, options.audio.outputs or 1)
    except StreamerError as e:
        services.metrics.refused(e)
        return error_response(from_domain(e), request_id)
    traced(sessions, request, started, request_id)
    ws = socket_response((answer,) if answer else (), WS_MAX_MSG)
    ws.headers["dg-request-id"] = request_id

    async def give_back() -> None:
        for session in sessions:
            await registry.release(session)

    transport = await upgrade(request, ws, give_back)
    await DeepgramConnection(registry, ws, key, sessions, options, request_id, transport).run()
    return ws


def renderer(
    services: Services,
    session: StreamSession,
    options: ListenOptions,
    request_id: str,
    channel: int,
    channels: int,
) -> ResultRenderer:
    """How channel ``channel``'s results read."""
    return ResultRenderer(
        request_id=request_id,
        model_name=services.asr.name,
        model_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"streamer:{services.asr.name}")),
        text_format=options.text_format,
        interim_results=options.interim_results,
        vad_events=options.vad_events,
        utterance_end_ms=options.utterance_end_ms,
        audio_ms=lambda: session.audio_ms,
        channel=channel,
        channels=channels,
    )


class DeepgramConnection(AdapterConnection):
    surface = "deepgram"
    pings_are_activity = False  # Deepgram: only audio or KeepAlive hold off NET-0001

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        key: KeyRecord,
        sessions: list[StreamSession],
        options: ListenOptions,
        request_id: str,
        transport: asyncio.Transport | None = None,
    ) -> None:
        super().__init__(registry, ws, sessions[0], transport)
        self.key = key
        self.options = options
        self.request_id = request_id
        count = len(sessions)
        self.renderer = renderer(self.services, sessions[0], options, request_id, 0, count)
        self.channels = [self._channel(s, i, count) for i, s in enumerate(sessions[1:], start=1)]
        # multichannel=true on a container that did not say channels=: its header will
        self._uncounted = options.audio.outputs is None
        self.audio = None if options.audio.passthrough else AudioInput(options.audio)

    def _channel(self, session: StreamSession, index: int, count: int) -> ChannelSession:
        rendering = renderer(self.services, session, self.options, self.request_id, index, count)
        return ChannelSession(self.registry, self.ws, session, rendering, self.quota, self)

    async def _count_channels(self, count: int) -> None:
        """The container's header has said how many channels: a session for each further one (admitted
        like the first; a refusal now closes the stream, as any limit during it does)."""
        self._uncounted = False
        if count == 1:
            return
        self.renderer.recount(count)
        for index, session in enumerate(
            await admit_channels(self.registry, self.key, self.options, count - 1), 1
        ):
            channel = self._channel(session, index, count)
            channel.start()
            self.channels.append(channel)

    async def run(self, last_seq: int | None = None) -> None:
        for channel in self.channels:
            channel.start()
        try:
            await super().run(last_seq)
        finally:
            if self.audio is not None:
                self.audio.close()
            await self._stop_channels()

    async def _stop_channels(self) -> None:
        """Every further channel detached, however the connection left (its end's drain step ended them
        already, unless the handler was cancelled before: then they stop without their results)."""
        for channel in self.channels:
            channel.ask_end(STOPPED)
        if carried := [channel.carried for channel in self.channels if channel.carried is not None]:
            await asyncio.wait(carried, timeout=self.registry.endings.bound_s)

    def channel_failed(self, e: StreamerError) -> None:
        """The model failed on a further channel: the stream ends as for a failure on the first."""
        self._on_fatal(e)

    async def drain(self, ending: Ending) -> None:
        """Reading has stopped (nothing more is pushed): every channel ends as the stream does, its
        results finalized and delivered as ``ending`` says, while the first drains; all of them before
        the last message (``Metadata``). A channel's model failure is the stream's error."""
        for channel in self.channels:
            channel.ask_end(ending)
        mine, *theirs = await asyncio.gather(
            super().drain(ending), *(channel.ended() for channel in self.channels), return_exceptions=True
        )
        # a channel's failure comes back as its value (``ended``) or raised; either way, the first one
        for outcome in (mine, *theirs):
            if isinstance(outcome, BaseException):
                raise outcome

    def idle_timeout_s(self) -> float | None:
        """Deepgram's: 10 s without audio or a ``KeepAlive`` (or the server's idle timeout, if shorter)."""
        limit = super().idle_timeout_s()
        return IDLE_S if limit is None else min(IDLE_S, limit)

    def idle_error(self, limit: float) -> StreamerError:
        return DeepgramIdleError(f"no audio or KeepAlive for {limit:g}s")

    def recoverable(self, e: StreamerError) -> bool:
        # a stream that cannot be decoded stays so: close (DATA-0000) rather than refuse each message
        return super().recoverable(e) and not isinstance(e, AudioStreamError)

    # ---- client messages

    async def on_binary(self, data: bytes) -> None:
        if not data:
            raise BadRequestError("an empty binary message is the old CloseStream; send CloseStream")
        if self.audio is None:
            await self.push_audio(data)
        else:
            async for channels in self.audio.feed(data):
                await self._push(channels)
        await self._gap()

    async def _gap(self) -> None:
        """A gap without words brings no message of its own: as the audio goes on, each channel's
        renderer is asked, in the writer's turn, whether ``UtteranceEnd`` is due."""
        if check := self.renderer.gap_check(self.session.audio_ms):
            await self.outbox.put(Reply((check,)))
        for channel in self.channels:
            await channel.gap()

    async def _push(self, channels: list[bytes]) -> None:
        """Each channel's decoded PCM: the first under the connection's limits (pacing, quota), each
        further channel charged to the quota too (Deepgram bills every channel)."""
        if self._uncounted:
            await self._count_channels(len(channels))
        first, *rest = channels
        for piece in pieces(first, self.session.pcm.max_frame_bytes):
            await self.push_audio(piece)
        for channel, pcm in zip(self.channels, rest, strict=True):
            await self.quota.charge(channel.session.pcm.seconds(pcm))
            await channel.push(pcm)

    async def on_text(self, data: str | bytes) -> bool:
        try:
            message = json.loads(data)
        except ValueError as e:
            raise BadRequestError("a text message must be JSON: KeepAlive, Finalize or CloseStream") from e
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "KeepAlive":
            return False
        if kind == "Finalize":
            await self._finalize()
            return False
        if kind == "CloseStream":
            await self.end()
            return True
        raise BadRequestError(f"unknown message type {kind!r}: expected KeepAlive, Finalize or CloseStream")

    async def _finalize(self) -> None:
        """End the open utterance now; its result (or the last one still coming) says ``from_finalize``.

        A reply follows the utterance's end through the outbox: when the writer renders it, every
        utterance that had ended before the Finalize has been seen ended, so it knows which result is the
        last one still coming, or that none is (then an empty result answers the Finalize).
        """
        await self.flush_audio()
        open_id = self.session.open_segment_id
        await self.session.commit("finalize")
        await self.outbox.put(Reply((functools.partial(self.renderer.finalize, open_id),)))
        for channel in self.channels:
            await channel.finalize()

    async def end(self, reason: str = "client_closed") -> None:
        """The stream's end: decode what is left, end every channel, then the first (``Metadata``)."""
        if self.audio is not None:
            async for channels in self.audio.finish():
                await self._push(channels)
        await super().end(reason)  # the end's drain step ends every channel before Metadata

    # ---- rendering

    def render(self, message: ServerMessage) -> list[str]:
        return self.renderer.render(message)

    def close_message(self, reason: str, error: StreamerError | None) -> str:
        if error is None:
            return reason
        return f"{close_prefix(error)}: {error.code}: {error.message}"
