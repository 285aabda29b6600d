"""What every WebSocket that carries a session shares, whatever its wire shape (protocol v1 or a vendor's).

One reader task takes the client's messages under the same guards on every surface (the session's length,
the message rate, the text size, the idle timeout) and hands each to the surface. A refused message is
reported and the session goes on; any other domain error finalizes what was accepted, says why and closes
with the contract's code. The session's length, server shutdown and a fatal model error end it the same
way everywhere. A new defence added here holds on every surface. The rest of the connection's life (the
writer draining a bounded :class:`Outbox`, the slot's keep-alive, the end in numbered steps, the detach)
is :class:`~streamer.session.run.SessionRun`'s, which the HTTP uploads share.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

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
from streamer.protocol import MAX_TEXT_BYTES, ErrorEvent
from streamer.session.ending import Ending
from streamer.session.outbox import OUTBOX_MAX_BYTES, Outbox, Render
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.run import Replay, SessionRun
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

# a client's ping (answered by the reader) and its pong (to the server's heartbeat): not messages of the
# surface; a pong never counts as the client's activity, a ping where the surface says so
_CONTROL = (WSMsgType.PING, WSMsgType.PONG)


class SessionSocket(SessionRun, ABC):
    """One accepted WebSocket and the session it carries: a :class:`SessionRun` whose reader is the
    socket's, under the guards every surface shares, and whose end closes the socket."""

    surface = "stream"  # for logs
    logger = log
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
        s = registry.services.settings
        outbox = Outbox(
            ws.send_str,
            render=render,
            maxsize=s.session_out_queue,
            max_bytes=OUTBOX_MAX_BYTES,
            send_timeout_s=s.send_timeout_s,
        )
        super().__init__(registry, session, outbox, AudioQuota(registry.services, session.key_id))
        self._transport = transport
        self.ws = ws
        self.pacer = AudioPacer(s.max_realtime_factor, s.realtime_burst_s)
        self.messages = TokenBucket(s.max_messages_per_s, s.message_burst)
        self._active_at = time.monotonic()  # the client's last audio or message
        self._idle_timer: asyncio.TimerHandle | None = None
        self._over_time_timer: asyncio.TimerHandle | None = None

    # ---- what a surface provides

    @abstractmethod
    async def opening(self, replay: Replay, resumed: bool) -> None:
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

    # ---- the connection: the runner's group of tasks and its end, with the socket's parts

    async def run(self, last_seq: int | None = None) -> None:
        """Serve the socket until the client or the server ends it; then park or release the session.

        The connection's tasks are :class:`SessionRun`'s group, this socket's reader among them; its
        timers (the session's length, the idle timeout) end it too, and stop with the group.
        """
        replay = self.attach(last_seq)
        # the limit holds for a client that has gone quiet too (the reader only checks it per message)
        loop = asyncio.get_running_loop()
        self._over_time_timer = loop.call_later(max(0.0, self._deadline - time.monotonic()), self._over_time)
        self._watch_idle()
        await self.carry(replay, resumed=last_seq is not None)

    def reader(self) -> Callable[[], Awaitable[None]]:
        return self._read_loop

    def slot_upkeep(self) -> Callable[[float], Awaitable[None]]:
        services, session = self.services, self.session
        return functools.partial(hold_slot, services, session.key_id, session.session_id)

    def stopping(self) -> None:
        for timer in (self._over_time_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()

    def cut(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def close(self, ending: Ending) -> None:
        """Close with the ending's code (a client that does not answer the close is cut off)."""
        if self.ws.closed:
            return
        reason = close_reason_bytes(ending.close_text or self.close_message(ending.reason, ending.error))
        try:
            async with asyncio.timeout(self.services.settings.send_timeout_s):
                await self.ws.close(code=ending.code, message=reason)
        except TimeoutError:
            self.cut()

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
