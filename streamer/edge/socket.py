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
from dataclasses import replace

from aiohttp import WSMsgType, web

from streamer.edge.handshake import hold_slot, idle_timeout_s, max_session_s
from streamer.edge.upgrade import close_reason_bytes
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
from streamer.session.ending import Ending
from streamer.session.outbox import OUTBOX_MAX_BYTES, Outbox, Render, SlowConsumerError
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

# a client's ping (answered by the reader) and its pong (to the server's heartbeat): not messages of the
# surface; a pong never counts as the client's activity, a ping where the surface says so
_CONTROL = (WSMsgType.PING, WSMsgType.PONG)
SLOT_TTL_S = 90.0  # a connected session's concurrent-session slot is refreshed every third of this


class SessionSocket(ABC):
    """One accepted WebSocket and the session it carries (the registry's ``Attachment``)."""

    surface = "stream"  # for logs
    resumable = True  # a dropped connection parks the session for a resume; False: the drop ends it
    pings_are_activity = True  # a client's WebSocket ping keeps the session from its idle timeout

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        transport: asyncio.Transport | None = None,
        render: Render | None = None,
    ) -> None:
        self.registry = registry
        self.services = registry.services
        self._transport = transport
        self.ws = ws
        self.session = session
        self.session_id = session.session_id
        s = self.services.settings
        self.outbox = Outbox(
            ws.send_str,
            render=render,
            maxsize=s.session_out_queue,
            max_bytes=OUTBOX_MAX_BYTES,
            send_timeout_s=s.send_timeout_s,
        )
        self.pacer = AudioPacer(s.max_realtime_factor, s.realtime_burst_s)
        self.messages = TokenBucket(s.max_messages_per_s, s.message_burst)
        self.quota = AudioQuota(self.services, session.key_id)
        self._ending: Ending | None = None  # set once, by the first end asked for
        self._end_asked = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._in_message = False  # the reader is handling a message (not waiting for one)
        self._active_at = time.monotonic()  # the client's last audio or message
        self._idle_timer: asyncio.TimerHandle | None = None
        self._finished = asyncio.Event()
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

    def idle_timeout_s(self) -> float | None:
        """How long the client may send nothing (no audio, no message) before the session is closed;
        None: never (the socket's heartbeat still cuts a peer that stopped answering pings)."""
        return idle_timeout_s(self.services.settings, self.session.key_id)

    def idle_error(self, limit: float) -> StreamerError:
        """Why an idle session is closed, in the surface's terms."""
        return SessionIdleError(f"no audio and no message for {limit:g}s")

    def recoverable(self, e: StreamerError) -> bool:
        """Whether ``e`` refuses one message only: reported, and the session goes on."""
        return isinstance(e, InvalidAudioError | BadRequestError | ConfigError | UnsupportedLanguageError)

    async def report(self, e: StreamerError) -> None:
        """Tell the client about a refused message, in order with its results."""
        await self.outbox.put(ErrorEvent(code=e.code, message=e.message, retryable=e.retryable))

    def close_message(self, reason: str, error: StreamerError | None) -> str:
        """The close frame's reason text (protocol v1 says it in ``session.closed`` and sends none)."""
        return ""

    # ---- the connection: one group of tasks, one end

    async def run(self, last_seq: int | None = None) -> None:
        """Serve the socket until the client or the server ends it; then park or release the session.

        The connection's tasks (reader, writer, keep-alive) and the session's emitter are one group: the
        first of them to end the connection (the reader at the client's close or an error, a timer, the
        emitter's failure, shutdown, a hand-over) says how (:class:`Ending`); :meth:`_end` then runs the
        end's steps, each bounded, and whatever way this handler leaves, its tasks are cancelled and
        joined and the session is detached (parked or released) exactly once.
        """
        registry, session = self.registry, self.session
        replay = registry.attach(session, self, self.outbox, last_seq)
        session.on_fatal = self._on_fatal
        loop = asyncio.get_running_loop()
        sid = self.session_id
        self._writer = writer = loop.create_task(self.outbox.run(), name=f"writer-{sid}")
        writer.add_done_callback(self._writer_done)
        keepalive = loop.create_task(self._hold_slot(), name=f"keepalive-{sid}")
        reader: asyncio.Task[None] | None = None
        # the limit holds for a client that has gone quiet too (the reader only checks it per message)
        over_time = loop.call_later(max(0.0, self._deadline - time.monotonic()), self._over_time)
        self._watch_idle()
        try:
            # first, so that whatever ends the connection, its last messages follow these
            await self.opening(replay, resumed=last_seq is not None)
            self._reader = reader = loop.create_task(self._serve(), name=f"reader-{sid}")
            if session.failure is not None:  # it failed while parked: say so instead of serving a zombie
                self._on_fatal(session.failure)
            await self._end_asked.wait()
            assert self._ending is not None
            await self._end(self._ending)
        finally:
            over_time.cancel()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            tasks = {t for t in (reader, writer, keepalive) if t is not None and not t.done()}
            for task in tasks:
                task.cancel()
            self.outbox.abandon()  # unblocks an emitter waiting for room in a queue nobody drains
            # in tasks the registry owns and joins at shutdown, so a cancelled handler cannot lose them;
            # the session stays findable (live, then parked) throughout: no window for a resume's 404
            registry.spawn(self.quota.settle(), f"settle-{sid}")
            ended = self._ending is not None and self._ending.ended
            detached = registry.detach(session, self, ended=ended or not self.resumable)
            try:
                # their own ends are their callbacks' business; bounded, as a cancel may be swallowed
                if tasks and (
                    left := (await asyncio.wait(tasks, timeout=self.services.settings.send_timeout_s))[1]
                ):
                    self._log.error(
                        "tasks still running after the end: %s", sorted(t.get_name() for t in left)
                    )
                await asyncio.shield(detached)
            finally:
                registry.endings.done(self)
                self._finished.set()

    async def _serve(self) -> None:
        """The reader task: the client's messages; its end ends the connection."""
        try:
            await self._read_loop()
        except Exception:
            # a bug, not the client's fault: say so (1011) instead of a bare close
            self._log.exception("internal error in the %s connection", self.surface)
            self.end_with(StreamerError("internal server error"))
        # the client closed or vanished (no-op when the reader or another task ended it already)
        self.ask_end(Ending.dropped("disconnected"))

    async def _hold_slot(self) -> None:
        """Keep this session's concurrent-session slot alive while connected (slots expire otherwise).

        Ends on the flag as well as the cancel: a cancel swallowed inside the Redis client would otherwise
        leave a task that keeps an ended session's slot taken forever (see ``DurableSessions.run``).
        """
        services, session = self.services, self.session
        while self._ending is None:
            with contextlib.suppress(StreamerError):  # fail_closed while Redis is down: try again later
                await services.state.call(
                    lambda: hold_slot(services, session.key_id, session.session_id, SLOT_TTL_S),
                    None,
                )
            # not a sleep: the end wakes it, even after a cancel the Redis client swallowed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SLOT_TTL_S / 3):
                    await self._end_asked.wait()

    @property
    def _deadline(self) -> float:
        """When the session (not this connection: a resume does not restart the clock) is over time."""
        return self.session.started_at + self._max_session_s

    @property
    def _max_session_s(self) -> float:
        return max_session_s(self.services.settings, self.session.key_id)

    def _over_time(self) -> None:
        self.end_with(SessionLimitError(f"sessions are limited to {self._max_session_s:.0f}s"))

    def _watch_idle(self) -> None:
        """Close a session whose client has sent nothing (no audio, no message, not even a keep-alive) for
        the idle timeout: a silent socket would otherwise hold its slot until ``max_session_s``."""
        limit = self.idle_timeout_s()
        if limit is None:
            return
        quiet = time.monotonic() - self._active_at
        if quiet < limit:
            self._idle_timer = asyncio.get_running_loop().call_later(limit - quiet, self._watch_idle)
        else:
            self.end_with(self.idle_error(limit))

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
        self.ask_end(
            Ending("slow_consumer", CloseCode.GOING_AWAY, finalize=False, farewell=False, ended=False)
        )

    async def _read_loop(self) -> None:
        limits = self.services.settings
        async for msg in self.ws:
            # messages already buffered are returned without suspending: give the other sessions a turn
            await asyncio.sleep(0)
            if self._ending is not None:
                break
            if (msg.type == WSMsgType.PING and self.pings_are_activity) or msg.type not in _CONTROL:
                self._active_at = time.monotonic()
            self._in_message = True
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
                elif msg.type == WSMsgType.PING:
                    await self.ws.pong(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
            except StreamerError as e:
                if self.recoverable(e):
                    self.services.metrics.errors.labels(e.code).inc()
                    await self.report(e)  # the message is refused; the session goes on
                    continue
                self.end_with(e)
                return
            except Exception:
                # a bug, not the client's fault: say so (1011) instead of a bare close
                self._log.exception("internal error in the %s connection", self.surface)
                self.end_with(StreamerError("internal server error"))
                return
            finally:
                self._in_message = False
            if self._ending is not None:  # ended while this message was handled
                return

    # ---- the end

    def ask_end(self, ending: Ending) -> None:
        """End the connection (the first ending asked for wins); :meth:`run` carries it out."""
        if self._ending is None:
            self._ending = ending
            self._end_asked.set()

    def end_with(self, e: StreamerError) -> None:
        """Finalize what was accepted, then say why and close with the contract's code."""
        if self._ending is None:
            self._log.info("closing %s session: %s", self.surface, e.code)
            self.services.metrics.errors.labels(e.code).inc()
        self.ask_end(Ending(e.code, e.close_code, e))

    def finish(self, reason: str, code: int) -> None:
        """A normal end (the client closed the session): finalize, deliver, say goodbye, close."""
        self.ask_end(Ending(reason, code))

    def _on_fatal(self, e: StreamerError) -> None:
        """The session's emitter failed: the model cannot serve it. Nothing is left to finalize."""
        if self._ending is None:
            self.services.metrics.errors.labels(e.code).inc()
        self.ask_end(Ending(e.code, e.close_code, e, finalize=False))

    async def _end(self, ending: Ending) -> None:
        """The end, in order; every step bounded, so the handler returns and the session is detached."""
        self.registry.endings.begin(self)
        s = self.services.settings
        # 1. stop reading: a message being handled may finish (bounded), a wait for the next one may not
        reader = self._reader
        if reader is not None and not reader.done():
            if ending.finalize and self._in_message:
                await asyncio.wait({reader}, timeout=s.drain_timeout_s)
            reader.cancel()
            await asyncio.wait({reader})
        # 2, 3. commit the open utterance and drain the finals: what was accepted is delivered
        if ending.finalize:
            try:
                async with asyncio.timeout(s.drain_timeout_s):
                    # a normal close is the client's end of the stream; any other, the server's
                    await self.session.drain("close" if ending.code == CloseCode.NORMAL else "drain")
            except StreamerError as e:  # the model failed on the way: that is why the session ends
                self.services.metrics.errors.labels(e.code).inc()
                ending = replace(ending, reason=e.code, code=e.close_code, error=e)
            except TimeoutError:
                # a drain that overruns must not keep the client from hearing why it is being closed
                self._log.warning("closing without every final: the drain overran")
        # 4. the last messages (``error`` if any, then ``session.closed``), delivered
        if ending.farewell and not self.outbox.closed:
            try:
                async with asyncio.timeout(s.send_timeout_s):
                    await self._farewell(ending)
            except TimeoutError:
                self._log.warning("the %s client did not take its last messages", self.surface)
        # 5. close (a client that does not answer the close is cut off)
        if not self.ws.closed:
            reason = close_reason_bytes(ending.close_text or self.close_message(ending.reason, ending.error))
            try:
                async with asyncio.timeout(s.send_timeout_s):
                    await self.ws.close(code=ending.code, message=reason)
            except TimeoutError:
                if self._transport is not None:
                    self._transport.abort()
        # 6. detach: in run's ``finally``, whichever way the handler leaves

    async def _farewell(self, ending: Ending) -> None:
        session, error = self.session, ending.error
        if error is not None:
            await self.outbox.put(
                ErrorEvent(code=error.code, message=error.message, retryable=error.retryable)
            )
        await self.outbox.put(
            SessionClosed(reason=ending.reason, audio_ms=session.audio_ms, finals=session.seq)
        )
        await self.outbox.finish()
        if self._writer is not None:
            await asyncio.wait({self._writer})

    # ---- the registry's Attachment

    async def hand_over(self) -> None:
        """A resume for this session arrived while this connection still looks alive: let it go."""
        self.ask_end(Ending.dropped("resumed", close_text="resumed elsewhere"))
        await self._finished.wait()

    async def shutdown(self) -> None:
        """Server shutdown: finalize and deliver what was accepted, then close with 1001."""
        self.ask_end(Ending("server_shutdown", CloseCode.GOING_AWAY))
        await self._finished.wait()

    @property
    def ending(self) -> Ending | None:
        """How this connection is ending, once it is."""
        return self._ending
