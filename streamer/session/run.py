"""One session carried by one connection, whatever carries it (a WebSocket, an HTTP upload): the
registry's ``Attachment``, the connection's group of tasks and its one end.

The group is the writer draining the :class:`Outbox`, the keep-alive of the key's concurrent slot, the
surface's reader (a socket's client messages; none for an upload, whose request feeds its sessions) and
the session's emitter (its failure ends the connection). The first of them to end the connection says
how (:class:`Ending`); :meth:`SessionRun._end` carries it out in numbered steps, each bounded, and
whichever way :meth:`SessionRun.carry` leaves, the tasks are cancelled and joined, the outbox abandoned,
the quota settled and the session detached (parked or released) exactly once. A surface plugs in what
is its own: the reader, its first messages, its drain (a connection that carries further sessions ends
them there), its last messages, the close (a socket's close frame), cutting a client that stopped reading,
what shutdown means to it. No aiohttp here: the surfaces are the edge's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from streamer.errors import StreamerError
from streamer.protocol import (
    CloseCode,
    ErrorEvent,
    ServerMessage,
    SessionClosed,
    TranscriptFinal,
    TranslationFinal,
)
from streamer.session.ending import Ending
from streamer.session.outbox import Outbox, SlowConsumerError
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

SLOT_TTL_S = 90.0  # a connected session's concurrent-session slot is refreshed every third of this

Replay = Sequence[TranscriptFinal | TranslationFinal]


class SessionRun:
    """One session and the connection that carries it: attach, run, end, detach."""

    surface = "session"  # for logs
    logger = log  # whose name its lines carry (a surface's own module, where operators look for them)
    resumable = False  # a dropped connection parks the session for a resume; False: the drop ends it

    def __init__(self, registry: SessionRegistry, session: StreamSession, outbox: Outbox, quota: AudioQuota):
        self.registry = registry
        self.services = registry.services
        self.session = session
        self.session_id = session.session_id
        self.outbox = outbox
        self.quota = quota
        self._ending: Ending | None = None  # set once, by the first end asked for
        self._end_asked = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._in_message = False  # the reader is handling a message (not waiting for one)
        self._finished = asyncio.Event()
        self._log = logging.LoggerAdapter(self.logger, {"session_id": self.session_id})

    # ---- what a surface plugs in

    def reader(self) -> Callable[[], Awaitable[None]] | None:
        """The reader task's work (the client's messages); its return ends the connection with
        :meth:`input_ended`. None: the surface feeds the session from outside the group."""
        return None

    def input_ended(self) -> Ending:
        """How the connection ends when the reader returns without having said."""
        return Ending.dropped("disconnected")

    async def opening(self, replay: Replay, resumed: bool) -> None:
        """The first messages, before the reader starts (``replay``: finals a resume missed)."""

    def slot_upkeep(self) -> Callable[[float], Awaitable[None]] | None:
        """One refresh of the session's concurrent slot for the seconds given, repeated while connected;
        None: the slot is kept elsewhere."""
        return None

    async def close(self, ending: Ending) -> None:
        """Step 5, after the last messages: close the connection (each step bounded by the caller's)."""

    def cut(self) -> None:
        """Drop the connection at once (a client that stopped reading cannot be closed politely)."""

    def stopping(self) -> None:
        """The group is being taken down: the surface's own timers stop (first in :meth:`carry`'s finally)."""

    async def drain(self, ending: Ending) -> None:
        """Steps 2, 3, once reading has stopped: when the ending finalizes, commit the open utterance and
        drain the finals (a surface that carries further sessions on the connection ends them here too)."""
        if ending.finalize:
            # a normal close is the client's end of the stream; any other, the server's
            await self.session.drain("close" if ending.code == CloseCode.NORMAL else "drain")

    def last_messages(self, ending: Ending) -> list[ServerMessage]:
        """Step 4: what the session says last, after its results (``error`` if any, ``session.closed``);
        none where another session's last message ends the connection (a further channel's)."""
        session, error = self.session, ending.error
        messages: list[ServerMessage] = []
        if error is not None:
            messages.append(ErrorEvent(code=error.code, message=error.message, retryable=error.retryable))
        messages.append(SessionClosed(reason=ending.reason, audio_ms=session.audio_ms, finals=session.seq))
        return messages

    def shutdown_ending(self) -> Ending:
        """What server shutdown means here: finalize and deliver what was accepted, then close (1001)."""
        return Ending("server_shutdown", CloseCode.GOING_AWAY)

    # ---- the group

    def attach(self, last_seq: int | None = None) -> list[TranscriptFinal | TranslationFinal]:
        """The session is carried here from now on; its writer and slot keep-alive start. Returns the
        finals to replay after ``last_seq``. Nothing may be awaited between a session's opening and this
        call: from here, :meth:`carry` releases it however the connection ends."""
        replay = self.registry.attach(self.session, self, self.outbox, last_seq)
        self.session.on_fatal = self._on_fatal
        loop, sid = asyncio.get_running_loop(), self.session_id
        self._writer = loop.create_task(self.outbox.run(), name=f"writer-{sid}")
        self._writer.add_done_callback(self._writer_done)
        if (upkeep := self.slot_upkeep()) is not None:
            self._keeper = loop.create_task(self._hold_slot(upkeep), name=f"keepalive-{sid}")
        return replay

    async def carry(self, replay: Replay = (), resumed: bool = False) -> None:
        """Serve the connection (after :meth:`attach`) until something ends it; then end it in order and
        park or release the session. Returns once the session is detached, however it leaves."""
        try:
            # first, so that whatever ends the connection, its last messages follow these
            await self.opening(replay, resumed)
            if (reading := self.reader()) is not None:
                name = f"reader-{self.session_id}"
                self._reader = asyncio.get_running_loop().create_task(self._read(reading), name=name)
            if self.session.failure is not None:  # it failed while parked: say so instead of serving a zombie
                self._on_fatal(self.session.failure)
            await self._end_asked.wait()
            assert self._ending is not None
            await self._end(self._ending)
        finally:
            self.stopping()
            await self._let_go()

    async def _let_go(self) -> None:
        """Step 6: the group's tasks cancelled and joined, the quota settled, the session detached."""
        registry, sid = self.registry, self.session_id
        tasks = {t for t in (self._reader, self._writer, self._keeper) if t is not None and not t.done()}
        for task in tasks:
            task.cancel()
        self.outbox.abandon()  # unblocks an emitter waiting for room in a queue nobody drains
        # in tasks the registry owns and joins at shutdown, so a cancelled handler cannot lose them;
        # the session stays findable (live, then parked) throughout: no window for a resume's 404
        registry.spawn(self.quota.settle(), f"settle-{sid}")
        ended = self._ending is not None and self._ending.ended
        detached = registry.detach(self.session, self, ended=ended or not self.resumable)
        try:
            # their own ends are their callbacks' business; bounded, as a cancel may be swallowed
            if tasks and (
                left := (await asyncio.wait(tasks, timeout=self.services.settings.send_timeout_s))[1]
            ):
                self._log.error("tasks still running after the end: %s", sorted(t.get_name() for t in left))
            await asyncio.shield(detached)
        finally:
            registry.endings.done(self)
            self._finished.set()

    async def _read(self, read: Callable[[], Awaitable[None]]) -> None:
        """The reader task: its end ends the connection."""
        try:
            await read()
        except Exception:
            # a bug, not the client's fault: say so (1011) instead of a bare close
            self._log.exception("internal error in the %s connection", self.surface)
            self.end_with(StreamerError("internal server error"))
        self.ask_end(self.input_ended())  # (a no-op when the reader or another task ended it already)

    async def _hold_slot(self, upkeep: Callable[[float], Awaitable[None]]) -> None:
        """Keep this session's concurrent-session slot alive while connected (slots expire otherwise).

        Ends on the flag as well as the cancel: a cancel swallowed inside the Redis client would otherwise
        leave a task that keeps an ended session's slot taken forever (see ``DurableSessions.run``).
        """
        while self._ending is None:
            with contextlib.suppress(StreamerError):  # fail_closed while Redis is down: try again later
                await self.services.state.call(lambda: upkeep(SLOT_TTL_S), None)
            # not a sleep: the end wakes it, even after a cancel the Redis client swallowed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SLOT_TTL_S / 3):
                    await self._end_asked.wait()

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (error := task.exception()) is None:
            return
        # nobody drains the outbox any more: abandon it, or producers waiting for room block forever
        self.outbox.abandon()
        if isinstance(error, SlowConsumerError):
            self._log.warning("closing a %s client that stopped reading", self.surface)
        else:
            self._log.warning("the %s connection's writer failed: %s", self.surface, type(error).__name__)
        self.cut()  # a polite close would wait to flush to a client that does not read
        self.ask_end(
            Ending("slow_consumer", CloseCode.GOING_AWAY, finalize=False, farewell=False, ended=False)
        )

    # ---- asking for the end

    def ask_end(self, ending: Ending) -> None:
        """End the connection (the first ending asked for wins); :meth:`carry` carries it out."""
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

    # ---- the end

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
        try:
            async with asyncio.timeout(s.drain_timeout_s):
                await self.drain(ending)
        except StreamerError as e:  # the model failed on the way: that is why the session ends
            self.services.metrics.errors.labels(e.code).inc()
            ending = replace(ending, reason=e.code, code=e.close_code, error=e)
        except TimeoutError:
            # a drain that overruns must not keep the client from hearing why it is being closed
            self._log.warning("closing without every final: the drain overran")
        # 4. the last messages (``error`` if any, then ``session.closed``) after every result, delivered
        if ending.farewell and not self.outbox.closed:
            try:
                async with asyncio.timeout(s.send_timeout_s):
                    await self._farewell(ending)
            except TimeoutError:
                self._log.warning("the %s client did not take its last messages", self.surface)
        # 5. close (the surface's own: a socket's close frame)
        await self.close(ending)
        # 6. detach: in carry's ``finally``, whichever way the handler leaves

    async def _farewell(self, ending: Ending) -> None:
        for message in self.last_messages(ending):
            await self.outbox.put(message)
        await self.outbox.finish()
        if self._writer is not None:
            await asyncio.wait({self._writer})

    # ---- the registry's Attachment

    async def hand_over(self) -> None:
        """A resume for this session arrived while this connection still looks alive: let it go."""
        self.ask_end(Ending.dropped("resumed", close_text="resumed elsewhere"))
        await self._finished.wait()

    async def shutdown(self) -> None:
        """Server shutdown: end as :meth:`shutdown_ending` says, and return once the session is detached."""
        self.ask_end(self.shutdown_ending())
        await self._finished.wait()

    @property
    def ending(self) -> Ending | None:
        """How this connection is ending, once it is."""
        return self._ending
