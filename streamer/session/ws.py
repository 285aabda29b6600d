"""``GET /v1/stream``: the WebSocket edge.

Authentication happens before the upgrade (a bad token is an HTTP 401, never an open socket). Then one
reader task receives frames and drives the session; the outbox's writer task sends; domain errors become
an ``error`` event followed by the contract's close code, after whatever was already accepted has been
finalized and delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSMsgType, web

from streamer import tracing
from streamer.errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    InvalidAudioError,
    RateLimitedError,
    SessionIdleError,
    SessionLimitError,
    StreamerError,
    UnsupportedLanguageError,
)
from streamer.guards.ratelimit import AudioPacer, TokenBucket
from streamer.pipeline.audio import max_frame_bytes
from streamer.protocol import (
    MAX_SAMPLE_RATE,
    MAX_TEXT_BYTES,
    PROTOCOL_SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    CloseCode,
    ErrorEvent,
    InputAudioCommit,
    Ping,
    Pong,
    SessionClose,
    SessionClosed,
    SessionCreated,
    SessionUpdate,
)
from streamer.session.durable import ResentAudio
from streamer.session.edge import (
    REGISTRY,
    REQUEST_ID,
    check_origin,
    error_response,
    idle_timeout_s,
    max_session_s,
    session_limits,
)
from streamer.session.outbox import OUTBOX_MAX_BYTES, Outbox, SlowConsumerError
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession
from streamer.session.validation import apply_update, check_session_config, parse_client_message

log = logging.getLogger(__name__)

# The largest legal message is one binary frame of max_frame_ms at 48 kHz (96,000 bytes for 1 s). aiohttp
# refuses (1009) anything beyond twice that before buffering it; below, the session's own limit answers.
WS_MAX_MSG = 2 * max_frame_bytes(MAX_SAMPLE_RATE, 1000)
SLOT_TTL_S = 90.0


def _token_from(request: web.Request) -> tuple[str | None, bool]:
    """The token from ``?token=`` or the ``token.<jwt>`` subprotocol; and whether subprotocols were used."""
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    protocols = [p.strip() for p in header.split(",") if p.strip()]
    for proto in protocols:
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
        grant = await services.tokens.redeem(
            token,
            lambda jti, ttl: services.backend_call(lambda: services.backend.consume_jti(jti, ttl), True),
        )
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
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL_SUBPROTOCOL,) if via_subprotocol else (),
        max_msg_size=max(WS_MAX_MSG, 2 * max_frame_bytes(MAX_SAMPLE_RATE, services.settings.max_frame_ms)),
        # no permessage-deflate: 4 KiB on the wire would inflate to megabytes of the loop's CPU time
        compress=False,
        heartbeat=20.0,
        decode_text=False,  # undecodable text is our bad_request, not aiohttp's 1007 close
    )
    try:
        await ws.prepare(request)
    except BaseException:
        if grant.resume:
            await registry.repark(session)
        raise
    transport = request.transport if isinstance(request.transport, asyncio.Transport) else None
    connection = Connection(registry, ws, session, transport)
    connection.resent = ResentAudio(session, audio_from_ms)
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


class Connection:
    """One accepted WebSocket and the session it carries."""

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.registry = registry
        self.services = registry.services
        self._transport = transport
        self.ws = ws
        self.session = session
        self.session_id = session.session_id
        self.outbox = Outbox(
            ws.send_str,
            maxsize=self.services.settings.session_out_queue,
            max_bytes=OUTBOX_MAX_BYTES,
            send_timeout_s=self.services.settings.send_timeout_s,
        )
        self._closing: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        s = self.services.settings
        self.pacer = AudioPacer(s.max_realtime_factor, s.realtime_burst_s)
        self.messages = TokenBucket(s.max_messages_per_s, s.message_burst)
        self.quota = AudioQuota(self.services, session.key_id)
        self.resent = ResentAudio(session, None)  # a resume's re-sent audio (set by the handler)
        self._ended = False  # the session is over (closed, failed, shut down), not merely disconnected
        self._active_at = time.monotonic()  # the client's last audio or message
        self._idle_timer: asyncio.TimerHandle | None = None
        self._finished = asyncio.Event()
        self._log = logging.LoggerAdapter(log, {"session_id": self.session_id})

    async def run(self, last_seq: int | None = None) -> None:
        """Serve the socket; on a drop, park the session for resume instead of ending it."""
        services, registry = self.services, self.registry
        replay = registry.attach(self.session, self, self.outbox, last_seq)
        self.session.on_fatal = self._on_fatal
        self._writer = writer = asyncio.create_task(self.outbox.run(), name=f"writer-{self.session_id}")
        writer.add_done_callback(self._writer_done)
        keepalive = asyncio.create_task(self._hold_slot())
        # the limit holds for a client that has gone quiet too (the reader only checks it per message)
        over_time = asyncio.get_running_loop().call_later(
            max(0.0, self._deadline - time.monotonic()), self._over_time
        )
        self._watch_idle()
        try:
            await self.outbox.put(
                SessionCreated(
                    session_id=self.session_id,
                    config=self.session.config,
                    limits=session_limits(
                        services.settings, self.session.config.sample_rate, self.session.key_id
                    ),
                    resumed=last_seq is not None,
                )
            )
            for message in replay:
                await self.outbox.put(message)
            await self._read_loop()
        finally:
            keepalive.cancel()
            over_time.cancel()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            writer.cancel()
            self.outbox.abandon()  # unblocks an emitter waiting for room in a queue nobody drains
            # in tasks the registry owns and joins at shutdown, so a cancelled handler cannot lose them;
            # the session stays findable (live, then parked) throughout: no window for a resume's 404
            registry.spawn(self.quota.settle(), f"settle-{self.session_id}")
            detached = registry.detach(self.session, self, ended=self._ended)
            try:
                await _join(writer)
                await asyncio.shield(detached)
                if not self.ws.closed:
                    await self.ws.close(code=CloseCode.GOING_AWAY)
            finally:
                self._finished.set()

    async def _hold_slot(self) -> None:
        """Keep this session's concurrent-session slot alive while connected (slots expire otherwise)."""
        services, session = self.services, self.session
        while True:
            with contextlib.suppress(StreamerError):  # fail_closed while Redis is down: try again later
                await services.backend_call(
                    lambda: services.backend.refresh_session(session.key_id, session.session_id, SLOT_TTL_S),
                    None,
                )
            await asyncio.sleep(SLOT_TTL_S / 3)

    @property
    def _deadline(self) -> float:
        """When the session (not this connection: a resume does not restart the clock) is over time."""
        return self.session.started_at + self._max_session_s

    @property
    def _max_session_s(self) -> float:
        return max_session_s(self.services.settings, self.session.key_id)

    def _over_time(self) -> None:
        if self._closing is None:
            limit = self._max_session_s
            error = SessionLimitError(f"sessions are limited to {limit:.0f}s")
            self._closing = asyncio.create_task(self.close_with(error))

    def _watch_idle(self) -> None:
        """Close a session whose client has sent nothing (no audio, no ping) for the idle timeout; a
        silent socket would otherwise hold its slot until ``max_session_s``."""
        limit = idle_timeout_s(self.services.settings, self.session.key_id)
        quiet = time.monotonic() - self._active_at
        if quiet < limit:
            self._idle_timer = asyncio.get_running_loop().call_later(limit - quiet, self._watch_idle)
        elif self._closing is None:
            error = SessionIdleError(f"no audio and no message for {limit:g}s")
            self._closing = asyncio.create_task(self.close_with(error))

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        # nobody drains the outbox any more: abandon it, or producers waiting for room block forever
        self.outbox.abandon()
        if isinstance(error, SlowConsumerError):
            self._log.warning("closing a client that stopped reading")
        else:
            self._log.warning("the connection's writer failed: %s", type(error).__name__)
        # a polite close would wait to flush to a client that does not read: cut the connection
        if self._transport is not None:
            self._transport.abort()

    async def hand_over(self) -> None:
        """A resume for this session arrived while this connection still looks alive: let it go."""
        await self.ws.close(code=CloseCode.GOING_AWAY, message=b"resumed elsewhere")
        await self._finished.wait()

    async def _read_loop(self) -> None:
        limits = self.services.settings
        deadline = self._deadline
        async for msg in self.ws:
            # messages already buffered are returned without suspending: give the other sessions a turn
            await asyncio.sleep(0)
            if self._closing is not None:
                break
            self._active_at = time.monotonic()
            try:
                if time.monotonic() > deadline:
                    raise SessionLimitError(f"sessions are limited to {self._max_session_s:.0f}s")
                if not self.messages.try_take():
                    raise RateLimitedError(
                        f"more than {limits.max_messages_per_s:g} messages per second",
                        code="message_rate_exceeded",
                    )
                if msg.type == WSMsgType.BINARY:
                    await self._on_audio(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    if await self._on_text(msg.data):
                        return
                elif msg.type == WSMsgType.ERROR:
                    break
            except (InvalidAudioError, BadRequestError, ConfigError, UnsupportedLanguageError) as e:
                await self._send_error(e)  # the message is refused; the session goes on
            except StreamerError as e:
                await self.close_with(e)
                return
            except Exception:
                # a bug, not the client's fault: say so (1011) instead of a bare close
                self._log.exception("internal error while handling a message")
                await self.close_with(StreamerError("internal server error"))
                return
        if self._closing is not None:
            await self._closing

    async def _on_audio(self, frame: bytes) -> None:
        pcm = self.session.pcm
        pcm.validate(frame)
        seconds = len(frame) / 2 / pcm.sample_rate
        if not self.resent.exempt(seconds) and not self.pacer.admit(seconds):
            raise RateLimitedError(
                f"audio is arriving faster than {self.services.settings.max_realtime_factor:g}x real time",
                code="audio_rate_exceeded",
            )
        frame = self.resent.trim(frame, pcm.min_frame_bytes)  # what the session transcribed already
        if not frame:
            return
        await self.quota.charge(len(frame) / 2 / pcm.sample_rate)
        await self.session.push_audio(frame)

    async def _on_text(self, data: str | bytes) -> bool:
        """Handle one JSON message; True when the session is over."""
        if len(data) > MAX_TEXT_BYTES:
            raise BadRequestError(f"text message too large: {len(data)} bytes, the limit is {MAX_TEXT_BYTES}")
        message = parse_client_message(data)
        if isinstance(message, Ping):
            await self.outbox.put(Pong(id=message.id))
        elif isinstance(message, InputAudioCommit):
            await self.session.commit()
        elif isinstance(message, SessionUpdate):
            config = apply_update(message.config, self.session.config)
            check_session_config(self.services, config)
            await self.session.update_config(config)
        elif isinstance(message, SessionClose):
            await self.session.drain()
            await self._finish("client_closed", CloseCode.NORMAL)
            return True
        return False

    async def _send_error(self, e: StreamerError) -> None:
        self.services.metrics.errors.labels(e.code).inc()
        await self.outbox.put(ErrorEvent(code=e.code, message=e.message, retryable=e.retryable))

    async def close_with(self, e: StreamerError) -> None:
        """Finalize what was accepted, then send the error and close with its code."""
        self._log.info("closing session: %s", e.code)
        # a drain that overruns must not keep the client from hearing why it is being closed
        with contextlib.suppress(StreamerError, TimeoutError):
            async with asyncio.timeout(self.services.settings.drain_timeout_s):
                await self.session.drain()
        await self._send_error(e)
        await self._finish(e.code, e.close_code)

    async def _finish(self, reason: str, code: int) -> None:
        self._ended = True
        await self.outbox.put(
            SessionClosed(reason=reason, audio_ms=self.session.audio_ms, finals=self.session.seq)
        )
        await self.outbox.finish()
        if self._writer is not None:
            # asyncio.timeout, not wait_for: see Outbox.run (3.11 can swallow a cancel in wait_for)
            with contextlib.suppress(SlowConsumerError, TimeoutError):
                async with asyncio.timeout(self.services.settings.send_timeout_s):
                    await asyncio.shield(self._writer)
        await self.ws.close(code=code)

    async def shutdown(self) -> None:
        """Server shutdown: finalize and deliver what was accepted, then close with 1001."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._drain_and_close())
        await self._closing

    async def _drain_and_close(self) -> None:
        with contextlib.suppress(StreamerError):
            await self.session.drain()
        await self._finish("server_shutdown", CloseCode.GOING_AWAY)

    def _on_fatal(self, e: StreamerError) -> None:
        if self._closing is None:
            self._closing = asyncio.create_task(self._fatal(e))

    async def _fatal(self, e: StreamerError) -> None:
        await self._send_error(e)
        await self._finish(e.code, e.close_code)


async def _join(task: asyncio.Task[None]) -> None:
    """Wait for a task we cancelled. Its own outcome is its done callback's business; a cancellation
    aimed at *us* while we wait still propagates (``asyncio.wait`` never raises the task's error)."""
    await asyncio.wait({task})
