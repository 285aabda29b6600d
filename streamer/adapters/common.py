"""What every vendor surface shares: credentials, the connection that carries a session, audio re-framing.

An adapter is a translator, not a second pipeline. Its connection admits a :class:`StreamSession` through
the :class:`SessionRegistry` (rate, capacity, the key's concurrent-session quota), attaches it with an
:class:`Outbox` whose writer renders each protocol v1 message in the vendor's shape, and feeds it audio
under the same guards as ``/v1/stream``: frame size, real-time pacing, the message rate, the text size, the
key's daily audio quota, the idle timeout and the session length. Vendor client events become session calls
(``commit``, ``drain``, ``update_config``). The upgrade itself is checked like ``/v1/stream``'s
(:func:`socket_response`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from typing import Annotated

from aiohttp import WSMsgType, web
from pydantic import Field, TypeAdapter

from streamer.errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    FrameTooLargeError,
    InvalidAudioError,
    RateLimitedError,
    SessionIdleError,
    SessionLimitError,
    StreamerError,
    UnsupportedLanguageError,
)
from streamer.guards.keys import KeyRecord
from streamer.guards.ratelimit import AudioPacer, TokenBucket
from streamer.pipeline.segmenter import Segmenter, SegmenterConfig
from streamer.protocol import (
    MAX_TEXT_BYTES,
    CloseCode,
    ErrorEvent,
    ServerMessage,
    SessionClosed,
    SessionConfig,
)
from streamer.services import Services
from streamer.session.edge import idle_timeout_s
from streamer.session.outbox import OUTBOX_MAX_BYTES, Outbox, SlowConsumerError
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(
    Annotated[ServerMessage, Field(discriminator="type")]
)
# audience of the adapters' temporary credentials: a session token for /v1/stream is not one, nor back
ADAPTER_AUDIENCE = "streamer.adapter"
SLOT_TTL_S = 90.0
NO_ENDPOINT_MS = 3_600_000  # "never end an utterance on silence": only commits (and max length) end it


async def key_record(services: Services, presented: str) -> KeyRecord:
    """The record of an API key presented in a vendor's header; 401 when it is not one."""
    key = await services.authenticate(presented)
    if key is None:
        raise AuthError("unknown API key")
    return key


async def key_by_id(services: Services, key_id: str) -> KeyRecord:
    """The record behind a temporary credential: the key must still exist and not be revoked."""
    for record in services.keys.records:
        if record.key_id == key_id:
            return record
    stored = await services.backend.get_key(key_id)
    if stored is None or stored.revoked:
        raise AuthError("the key this credential was made for is no longer valid")
    return stored


async def redeem(services: Services, token: str) -> tuple[KeyRecord, dict[str, object]]:
    """Spend a temporary credential (single use, TTL): its key and what it carried."""
    grant = await services.tokens.redeem(
        token,
        lambda jti, ttl: services.backend_call(lambda: services.backend.consume_jti(jti, ttl), True),
        audience=ADAPTER_AUDIENCE,
    )
    return await key_by_id(services, grant.key_id), dict(grant.extra)


def issue(services: Services, key: KeyRecord, ttl_s: float, extra: dict[str, object]) -> tuple[str, float]:
    """A temporary credential for ``key``: (token, expires at, epoch seconds)."""
    token, grant = services.tokens.issue(
        "", key.key_id, SessionConfig(), audience=ADAPTER_AUDIENCE, ttl_s=ttl_s, extra=extra
    )
    return token, grant.expires_at


def socket_response(protocols: tuple[str, ...], max_msg_size: int) -> web.WebSocketResponse:
    """A vendor socket, set up like ``/v1/stream``'s: no permessage-deflate (a few KiB on the wire would
    inflate to megabytes of the loop's CPU time) and aiohttp's ping every 20 s (a vanished peer is seen)."""
    return web.WebSocketResponse(
        protocols=protocols, max_msg_size=max_msg_size, compress=False, heartbeat=20.0
    )


def check_language(services: Services, language: str | None) -> str | None:
    """A language the ASR model knows (primary subtag: ``en-US`` is ``en``), or None to detect."""
    if language is None:
        return None
    code = language.split("-")[0].split("_")[0].lower()
    if code not in services.asr.languages():
        raise UnsupportedLanguageError(
            f"language {language!r} is not supported by the model {services.asr.name}"
        )
    return code


@dataclasses.dataclass(frozen=True)
class Turns:
    """How a surface wants utterances cut: by silence (``end_silence_ms``), or only on commit (None)."""

    end_silence_ms: int | None = None
    start_threshold: float | None = None
    pre_roll_ms: int | None = None

    def apply(self, base: SegmenterConfig) -> SegmenterConfig:
        cfg = base
        if self.start_threshold is not None:
            # keep the hysteresis: the end threshold stays below the start one
            end = min(cfg.end_threshold, self.start_threshold * 0.7)
            cfg = dataclasses.replace(cfg, start_threshold=self.start_threshold, end_threshold=end)
        if self.pre_roll_ms is not None:
            cfg = dataclasses.replace(cfg, pre_roll_ms=self.pre_roll_ms)
        silence = NO_ENDPOINT_MS if self.end_silence_ms is None else self.end_silence_ms
        # a pause (for speculative decoding) must stay shorter than the silence that ends an utterance
        return dataclasses.replace(
            cfg, end_silence_ms=silence, pause_ms=min(cfg.pause_ms, max(32, silence // 2))
        )


def retune(session: StreamSession, turns: Turns) -> None:
    """Apply ``turns`` to the session's segmenter. Only between utterances: the audio clock and the
    segment numbering carry over, nothing that was spoken is lost."""
    old = session.segmenter
    if old.open_segment_id is not None:
        raise ConfigError("turn detection can change only between utterances")
    services = session.services
    config = turns.apply(services.segmenter_config).for_input_rate(session.config.sample_rate)
    new = Segmenter(config)
    new.continue_at(old.samples, old._next_id)  # (the segmenter has no public reader of its next id)
    session.segmenter = new


def rethreshold(session: StreamSession, turns: Turns) -> None:
    """Put ``turns``' thresholds back after a sample-rate change reset the segmenter's config."""
    config = turns.apply(session.services.segmenter_config).for_input_rate(session.config.sample_rate)
    session.segmenter.config = config


class Reframer:
    """Vendor clients send audio in any length: cut it into frames the session's PCM input accepts."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def frames(self, data: bytes, min_bytes: int, max_bytes: int) -> list[bytes]:
        self._pending += data
        out: list[bytes] = []
        while len(self._pending) >= min_bytes:
            n = min(len(self._pending), max_bytes)
            n -= n % 2
            out.append(bytes(self._pending[:n]))
            del self._pending[:n]
        return out

    def clear(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)


class AdapterConnection(ABC):
    """One vendor WebSocket and the session it carries (the registry's ``Attachment``)."""

    surface = "adapter"

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.registry = registry
        self._transport = transport
        self.services = registry.services
        self.ws = ws
        self.session = session
        s = self.services.settings
        self.outbox = Outbox(
            self._deliver,
            maxsize=s.session_out_queue,
            max_bytes=OUTBOX_MAX_BYTES,
            send_timeout_s=s.send_timeout_s,
        )
        self.pacer = AudioPacer(s.max_realtime_factor, s.realtime_burst_s)
        self.messages = TokenBucket(s.max_messages_per_s, s.message_burst)
        self.quota = AudioQuota(self.services, session.key_id)
        self.reframer = Reframer()
        self._closing: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()
        self._active_at = time.monotonic()  # the client's last message of any kind
        self._idle_timer: asyncio.TimerHandle | None = None
        self._log = logging.LoggerAdapter(log, {"session_id": session.session_id})

    # ---- what a surface provides

    def max_text_bytes(self) -> int:
        """The largest text message a client may send (a surface that carries audio as text allows more)."""
        return MAX_TEXT_BYTES

    @abstractmethod
    def render(self, message: ServerMessage) -> list[str]:
        """The vendor's frames for one protocol v1 message (maybe none)."""

    @abstractmethod
    async def on_text(self, data: str) -> bool:
        """One client text message; True when the session is over."""

    async def report(self, e: StreamerError) -> None:
        """Tell the client about a refused message (the session goes on), in order with its results."""
        await self.outbox.put(ErrorEvent(code=e.code, message=e.message, retryable=e.retryable))

    def close_reason(self, e: StreamerError) -> str:
        return e.message

    def recoverable(self, e: StreamerError) -> bool:
        return isinstance(e, InvalidAudioError | BadRequestError | ConfigError | UnsupportedLanguageError)

    @abstractmethod
    async def on_open(self) -> None:
        """Frames the vendor sends first (after the session is attached)."""

    # ---- the connection

    async def send_json_text(self, text: str) -> None:
        """A vendor frame outside the session's message order (answers to client events)."""
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(text)

    async def _deliver(self, text: str) -> None:
        for frame in self.render(SERVER_MESSAGE.validate_json(text)):
            await self.ws.send_str(frame)

    async def run(self) -> None:
        """Serve the socket until the client or the server ends it; the session ends with it (vendor
        APIs have no resume), and its concurrent-session slot is given back."""
        registry = self.registry
        registry.attach(self.session, self, self.outbox)
        self.session.on_fatal = self._on_fatal
        self._writer = writer = asyncio.create_task(
            self.outbox.run(), name=f"writer-{self.session.session_id}"
        )
        writer.add_done_callback(self._writer_done)
        keepalive = asyncio.create_task(self._hold_slot())
        over_time = asyncio.get_running_loop().call_later(
            max(0.0, self._deadline - time.monotonic()), self._over_time
        )
        self._watch_idle()
        try:
            await self.on_open()
            await self._read_loop()
        finally:
            keepalive.cancel()
            over_time.cancel()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            writer.cancel()
            self.outbox.abandon()
            registry.spawn(self.quota.settle(), f"settle-{self.session.session_id}")
            try:
                # shielded: a handler cancelled because its client went away must not cancel the
                # release (the session's work and its key's concurrent-session slot)
                await asyncio.shield(registry.detach(self.session, self, ended=True))
                await asyncio.wait({writer})
                if not self.ws.closed:
                    await self.ws.close(code=CloseCode.GOING_AWAY)
            finally:
                self._finished.set()

    @property
    def _deadline(self) -> float:
        return self.session.started_at + self.services.settings.max_session_s

    def _over_time(self) -> None:
        if self._closing is None:
            limit = self.services.settings.max_session_s
            self._closing = asyncio.create_task(
                self.close_with(SessionLimitError(f"sessions are limited to {limit:.0f}s"))
            )

    def _watch_idle(self) -> None:
        """Close a session whose client has sent nothing (no audio, no message, not even a keep-alive) for
        the idle timeout, as ``/v1/stream`` does: a silent socket must not hold its slot for an hour."""
        limit = idle_timeout_s(self.services.settings, self.session.key_id)
        quiet = time.monotonic() - self._active_at
        if quiet < limit:
            self._idle_timer = asyncio.get_running_loop().call_later(limit - quiet, self._watch_idle)
        elif self._closing is None:
            error = SessionIdleError(f"no audio and no message for {limit:g}s")
            self._closing = asyncio.create_task(self.close_with(error))

    async def _hold_slot(self) -> None:
        services, session = self.services, self.session
        while True:
            with contextlib.suppress(StreamerError):
                await services.backend_call(
                    lambda: services.backend.refresh_session(session.key_id, session.session_id, SLOT_TTL_S),
                    None,
                )
            await asyncio.sleep(SLOT_TTL_S / 3)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self.outbox.abandon()
        error = task.exception()
        if isinstance(error, SlowConsumerError):
            self._log.warning("closing a %s client that stopped reading", self.surface)
        else:
            self._log.warning("the %s writer failed: %s", self.surface, type(error).__name__)
        if self._transport is not None:
            self._transport.abort()

    async def _read_loop(self) -> None:
        settings = self.services.settings
        async for msg in self.ws:
            # messages already buffered are returned without suspending: give the other sessions a turn
            await asyncio.sleep(0)
            if self._closing is not None:
                break
            self._active_at = time.monotonic()
            try:
                if time.monotonic() > self._deadline:
                    raise SessionLimitError(f"sessions are limited to {settings.max_session_s:.0f}s")
                if not self.messages.try_take():
                    raise RateLimitedError(
                        f"more than {settings.max_messages_per_s:g} messages per second",
                        code="message_rate_exceeded",
                    )
                if msg.type == WSMsgType.BINARY:
                    await self.on_binary(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    if len(msg.data) > (limit := self.max_text_bytes()):
                        raise BadRequestError(
                            f"text message too large: {len(msg.data)} characters, the limit is {limit}"
                        )
                    if await self.on_text(msg.data):
                        return
                elif msg.type == WSMsgType.ERROR:
                    break
            except StreamerError as e:
                if self.recoverable(e):
                    self.services.metrics.errors.labels(e.code).inc()
                    await self.report(e)
                    continue
                await self.close_with(e)
                return
            except Exception:
                self._log.exception("internal error in the %s adapter", self.surface)
                await self.close_with(StreamerError("internal server error"))
                return
        if self._closing is not None:
            await self._closing

    async def on_binary(self, data: bytes) -> None:
        raise BadRequestError("this API takes no binary messages")

    async def push_audio(self, data: bytes) -> None:
        """One message's audio (s16le at the session's rate): the same limits as ``/v1/stream``."""
        pcm = self.session.pcm
        if len(data) > pcm.max_frame_bytes:
            raise FrameTooLargeError(
                f"an audio message of {len(data)} bytes exceeds the limit of {pcm.max_frame_bytes} bytes "
                f"({self.services.settings.max_frame_ms} ms)"
            )
        seconds = len(data) / 2 / pcm.sample_rate
        if not self.pacer.admit(seconds):
            raise RateLimitedError(
                f"audio is arriving faster than {self.services.settings.max_realtime_factor:g}x real time",
                code="audio_rate_exceeded",
            )
        await self.quota.charge(seconds)
        for frame in self.reframer.frames(data, pcm.min_frame_bytes, pcm.max_frame_bytes):
            await self.session.push_audio(frame)

    async def flush_audio(self) -> None:
        """Audio held back for being shorter than a frame: pad it to one (a commit must not lose it)."""
        pcm = self.session.pcm
        held = len(self.reframer)
        if held == 0:
            return
        pad = max(pcm.min_frame_bytes - held, held % 2)
        for frame in self.reframer.frames(b"\0" * pad, pcm.min_frame_bytes, pcm.max_frame_bytes):
            await self.session.push_audio(frame)

    async def end(self, reason: str = "client_closed") -> None:
        """The client is done: finalize, deliver every final, say goodbye, close normally."""
        await self.flush_audio()
        await self.session.drain()
        await self._finish(None, CloseCode.NORMAL, reason)

    async def close_with(self, e: StreamerError) -> None:
        """Finalize what was accepted, then tell the client why and close with the contract's code."""
        self._log.info("closing %s session: %s", self.surface, e.code)
        with contextlib.suppress(StreamerError, TimeoutError):
            async with asyncio.timeout(self.services.settings.drain_timeout_s):
                await self.session.drain()
        self.services.metrics.errors.labels(e.code).inc()
        await self._finish(e, e.close_code, self.close_reason(e))

    async def _finish(self, e: StreamerError | None, code: int, reason: str) -> None:
        session = self.session
        if e is not None:
            await self.outbox.put(ErrorEvent(code=e.code, message=e.message, retryable=e.retryable))
        summary = SessionClosed(reason=e.code if e else reason, audio_ms=session.audio_ms, finals=session.seq)
        await self.outbox.put(summary)
        await self.outbox.finish()
        if self._writer is not None:
            with contextlib.suppress(SlowConsumerError, TimeoutError):
                async with asyncio.timeout(self.services.settings.send_timeout_s):
                    await asyncio.shield(self._writer)
        # a close reason is at most 123 bytes
        await self.ws.close(code=code, message=reason.encode()[:123])

    # ---- the registry's Attachment

    async def hand_over(self) -> None:
        await self.ws.close(code=CloseCode.GOING_AWAY, message=b"session taken over")
        await self._finished.wait()

    async def shutdown(self) -> None:
        if self._closing is None:
            self._closing = asyncio.create_task(self._drain_and_close())
        await self._closing

    async def _drain_and_close(self) -> None:
        with contextlib.suppress(StreamerError):
            await self.session.drain()
        await self._finish(None, CloseCode.GOING_AWAY, "server shutting down")

    def _on_fatal(self, e: StreamerError) -> None:
        if self._closing is None:
            self._closing = asyncio.create_task(self._fatal(e))

    async def _fatal(self, e: StreamerError) -> None:
        self.services.metrics.errors.labels(e.code).inc()
        await self._finish(e, e.close_code, self.close_reason(e))
