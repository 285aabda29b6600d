"""What every WebSocket that carries a session shares, whatever its wire shape (protocol v1 or a vendor's).

One reader task takes the client's messages under the same guards on every surface (the session's length,
the message rate, the text size, the idle timeout) and hands each to the surface; one writer task drains a
bounded :class:`Outbox`. A refused message is reported and the session goes on; any other domain error
finalizes what was accepted, says why and closes with the contract's code. The session's length, server
shutdown and a fatal model error end it the same way everywhere. A new defence added here holds on every
surface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

from aiohttp import WSMsgType, web

from streamer.errors import (
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
from streamer.protocol import (
    MAX_TEXT_BYTES,
    CloseCode,
    ErrorEvent,
    SessionClosed,
    TranscriptFinal,
    TranslationFinal,
)
from streamer.session.edge import hold_slot, idle_timeout_s, max_session_s
from streamer.session.outbox import OUTBOX_MAX_BYTES, Outbox, Send, SlowConsumerError
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

SLOT_TTL_S = 90.0  # a connected session's concurrent-session slot is refreshed every third of this


def socket_response(
    protocols: tuple[str, ...], max_msg_size: int, *, decode_text: bool = True
) -> web.WebSocketResponse:
    """The upgrade every surface answers with: no permessage-deflate (4 KiB on the wire would inflate to
    megabytes of the loop's CPU time) and aiohttp's ping every 20 s (a vanished peer is seen)."""
    return web.WebSocketResponse(
        protocols=protocols,
        max_msg_size=max_msg_size,
        compress=False,
        heartbeat=20.0,
        decode_text=decode_text,
    )


class SessionSocket(ABC):
    """One accepted WebSocket and the session it carries (the registry's ``Attachment``)."""

    surface = "stream"  # for logs
    resumable = True  # a dropped connection parks the session for a resume; False: the drop ends it

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        transport: asyncio.Transport | None = None,
        send: Send | None = None,
    ) -> None:
        self.registry = registry
        self.services = registry.services
        self._transport = transport
        self.ws = ws
        self.session = session
        self.session_id = session.session_id
        s = self.services.settings
        self.outbox = Outbox(
            send or ws.send_str,
            maxsize=s.session_out_queue,
            max_bytes=OUTBOX_MAX_BYTES,
            send_timeout_s=s.send_timeout_s,
        )
        self.pacer = AudioPacer(s.max_realtime_factor, s.realtime_burst_s)
        self.messages = TokenBucket(s.max_messages_per_s, s.message_burst)
        self.quota = AudioQuota(self.services, session.key_id)
        self.ended = False  # the session is over (closed, failed, shut down), not merely disconnected
        self._closing: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._active_at = time.monotonic()  # the client's last audio or message
        self._idle_timer: asyncio.TimerHandle | None = None
        self._finished = asyncio.Event()
        self._serving = False  # the slot is refreshed while this is true (not only until a cancel lands)
        self._log = logging.LoggerAdapter(log, {"session_id": self.session_id})

    # ---- what a surface provides

    @abstractmethod
    async def opening(self, replay: Sequence[TranscriptFinal | TranslationFinal], resumed: bool) -> None:
        """The first messages, before the client's are read (``replay``: finals a resume missed)."""

    @abstractmethod
    async def on_binary(self, data: bytes) -> None:
        """One binary message."""

    @abstractmethod
    async def on_text(self, data: str | bytes) -> bool:
        """One text message (no larger than :meth:`max_text_bytes`); True when the session is over."""

    def max_text_bytes(self) -> int:
        """The largest text message a client may send (a surface that carries audio as text allows more)."""
        return MAX_TEXT_BYTES

    def recoverable(self, e: StreamerError) -> bool:
        """Whether ``e`` refuses one message only: reported, and the session goes on."""
        return isinstance(e, InvalidAudioError | BadRequestError | ConfigError | UnsupportedLanguageError)

    async def report(self, e: StreamerError) -> None:
        """Tell the client about a refused message, in order with its results."""
        await self.outbox.put(ErrorEvent(code=e.code, message=e.message, retryable=e.retryable))

    def close_message(self, reason: str, error: StreamerError | None) -> str:
        """The close frame's reason text (protocol v1 says it in ``session.closed`` and sends none)."""
        return ""

    # ---- the connection

    async def run(self, last_seq: int | None = None) -> None:
        """Serve the socket until the client or the server ends it; then park or release the session."""
        registry = self.registry
        replay = registry.attach(self.session, self, self.outbox, last_seq)
        self.session.on_fatal = self._on_fatal
        self._writer = writer = asyncio.create_task(self.outbox.run(), name=f"writer-{self.session_id}")
        writer.add_done_callback(self._writer_done)
        self._serving = True
        keepalive = asyncio.create_task(self._hold_slot())
        # the limit holds for a client that has gone quiet too (the reader only checks it per message)
        over_time = asyncio.get_running_loop().call_later(
            max(0.0, self._deadline - time.monotonic()), self._over_time
        )
        self._watch_idle()
        try:
            await self.opening(replay, resumed=last_seq is not None)
            await self._read_loop()
        finally:
            self._serving = False
            keepalive.cancel()
            over_time.cancel()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            writer.cancel()
            self.outbox.abandon()  # unblocks an emitter waiting for room in a queue nobody drains
            # in tasks the registry owns and joins at shutdown, so a cancelled handler cannot lose them;
            # the session stays findable (live, then parked) throughout: no window for a resume's 404
            registry.spawn(self.quota.settle(), f"settle-{self.session_id}")
            detached = registry.detach(self.session, self, ended=self.ended or not self.resumable)
            try:
                await _join(writer)
                await asyncio.shield(detached)
                if not self.ws.closed:
                    await self.ws.close(code=CloseCode.GOING_AWAY)
            finally:
                self._finished.set()

    async def _hold_slot(self) -> None:
        """Keep this session's concurrent-session slot alive while connected (slots expire otherwise).

        Ends on the flag as well as the cancel: a cancel swallowed inside the Redis client would otherwise
        leave a task that keeps an ended session's slot taken forever (see ``DurableSessions.run``).
        """
        services, session = self.services, self.session
        while self._serving:
            with contextlib.suppress(StreamerError):  # fail_closed while Redis is down: try again later
                await services.backend_call(
                    lambda: hold_slot(services, session.key_id, session.session_id, SLOT_TTL_S),
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
            error = SessionLimitError(f"sessions are limited to {self._max_session_s:.0f}s")
            self._closing = asyncio.create_task(self.close_with(error))

    def _watch_idle(self) -> None:
        """Close a session whose client has sent nothing (no audio, no message, not even a keep-alive) for
        the idle timeout: a silent socket would otherwise hold its slot until ``max_session_s``."""
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
            self._log.warning("closing a %s client that stopped reading", self.surface)
        else:
            self._log.warning("the %s connection's writer failed: %s", self.surface, type(error).__name__)
        # a polite close would wait to flush to a client that does not read: cut the connection
        if self._transport is not None:
            self._transport.abort()

    async def _read_loop(self) -> None:
        limits = self.services.settings
        async for msg in self.ws:
            # messages already buffered are returned without suspending: give the other sessions a turn
            await asyncio.sleep(0)
            if self._closing is not None:
                break
            self._active_at = time.monotonic()
            try:
                if time.monotonic() > self._deadline:
                    raise SessionLimitError(f"sessions are limited to {self._max_session_s:.0f}s")
                if not self.messages.try_take():
                    raise RateLimitedError(
                        f"more than {limits.max_messages_per_s:g} messages per second",
                        code="message_rate_exceeded",
                    )
                if msg.type == WSMsgType.BINARY:
                    await self.on_binary(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    if len(msg.data) > (limit := self.max_text_bytes()):
                        raise BadRequestError(
                            f"text message too large: {len(msg.data)} bytes, the limit is {limit}"
                        )
                    if await self.on_text(msg.data):
                        return
                elif msg.type == WSMsgType.ERROR:
                    break
            except StreamerError as e:
                if self.recoverable(e):
                    self.services.metrics.errors.labels(e.code).inc()
                    await self.report(e)  # the message is refused; the session goes on
                    continue
                await self.close_with(e)
                return
            except Exception:
                # a bug, not the client's fault: say so (1011) instead of a bare close
                self._log.exception("internal error in the %s connection", self.surface)
                await self.close_with(StreamerError("internal server error"))
                return
        if self._closing is not None:
            await self._closing

    # ---- ends

    async def close_with(self, e: StreamerError) -> None:
        """Finalize what was accepted, then say why and close with the contract's code."""
        self._log.info("closing %s session: %s", self.surface, e.code)
        # a drain that overruns must not keep the client from hearing why it is being closed
        with contextlib.suppress(StreamerError, TimeoutError):
            async with asyncio.timeout(self.services.settings.drain_timeout_s):
                await self.session.drain()
        self.services.metrics.errors.labels(e.code).inc()
        await self._finish(e.code, e.close_code, e)

    async def _finish(self, reason: str, code: int, error: StreamerError | None = None) -> None:
        """The last messages (``error`` if any, then ``session.closed``), delivered, then the close."""
        self.ended = True
        session = self.session
        if error is not None:
            await self.outbox.put(
                ErrorEvent(code=error.code, message=error.message, retryable=error.retryable)
            )
        await self.outbox.put(SessionClosed(reason=reason, audio_ms=session.audio_ms, finals=session.seq))
        await self.outbox.finish()
        if self._writer is not None:
            # asyncio.timeout, not wait_for: see Outbox.run (3.11 can swallow a cancel in wait_for)
            with contextlib.suppress(SlowConsumerError, TimeoutError):
                async with asyncio.timeout(self.services.settings.send_timeout_s):
                    await asyncio.shield(self._writer)
        await self.ws.close(code=code, message=close_reason_bytes(self.close_message(reason, error)))

    # ---- the registry's Attachment

    async def hand_over(self) -> None:
        """A resume for this session arrived while this connection still looks alive: let it go."""
        await self.ws.close(code=CloseCode.GOING_AWAY, message=b"resumed elsewhere")
        await self._finished.wait()

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
        self.services.metrics.errors.labels(e.code).inc()
        await self._finish(e.code, e.close_code, e)


def close_reason_bytes(text: str) -> bytes:
    """A close frame's reason: at most 123 bytes, and still UTF-8 (a cut never splits a character)."""
    return text.encode()[:123].decode("utf-8", "ignore").encode()


async def _join(task: asyncio.Task[None]) -> None:
    """Wait for a task we cancelled. Its own outcome is its done callback's business; a cancellation
    aimed at *us* while we wait still propagates (``asyncio.wait`` never raises the task's error)."""
    await asyncio.wait({task})
