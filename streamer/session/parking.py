"""Where a session waits for its client to come back: in this process (:class:`Parking`), or with shared
state in Redis for whichever instance the resume reaches (:class:`DurableParking`). The registry keeps
one and never asks which.

Both keep a parked session in :attr:`Parking.parked` from the moment its connection drops until its
detach has finished finalizing the open utterance (``settled``): a resume arriving meanwhile finds it and
waits for that, bounded. In this process it stays there until the window ends (then it is released);
durably it leaves for the shared state once settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from streamer.errors import SessionNotFoundError, StreamerError
from streamer.guards.load import LoadMeter
from streamer.services import Services
from streamer.session.durable import DurableSessions, SessionBusyError
from streamer.session.runtime import StreamSession

__all__ = ["SLOT_GRACE_S", "DurableParking", "Parked", "Parking"]

log = logging.getLogger(__name__)

# a parked session's concurrent-session slot outlives its window by this much (then it expires by itself)
SLOT_GRACE_S = 30.0

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]
Release = Callable[[StreamSession], Awaitable[None]]


@dataclass
class Parked:
    session: StreamSession
    settled: asyncio.Event  # set once the detach has finished finalizing the open utterance
    expiry: asyncio.TimerHandle | None = None


class Parking:
    """Parked in this process: resumable here until the resume window ends, then released."""

    def __init__(self, services: Services, spawn: Spawn, release: Release) -> None:
        self.services = services
        self._spawn = spawn  # tasks the registry owns (and joins when it closes)
        self._release = release
        self.parked: dict[str, Parked] = {}

    @property
    def durable(self) -> DurableSessions | None:
        """The shared state's record of sessions, when sessions outlive this process."""
        return None

    def started(self, session: StreamSession) -> None:
        """A new session was attached: nothing is recorded outside the process."""

    async def park(self, parked: Parked, window: float) -> None:
        """Hold ``parked`` (already in :attr:`parked`) for ``window`` seconds once its detach is done."""
        session = parked.session
        try:
            await session.detach()
            await self._store(session, window)
        finally:
            self._stored(parked, window)
            parked.settled.set()
        services, sid = self.services, session.session_id
        await services.state.call(
            lambda: services.backend.refresh_session(session.key_id, sid, window + SLOT_GRACE_S), None
        )

    async def _store(self, session: StreamSession, window: float) -> None:
        """Nothing to write: the session waits here."""

    def _stored(self, parked: Parked, window: float) -> None:
        sid = parked.session.session_id
        if self.parked.get(sid) is parked:  # not resumed meanwhile: it expires with its window
            parked.expiry = asyncio.get_running_loop().call_later(window, self._expire_soon, sid)

    async def take(self, session_id: str, key_id: str) -> StreamSession:
        """The parked session for a resume by ``key_id``, out of parking."""
        parked = self.parked.get(session_id)
        if parked is None or parked.session.key_id != key_id:
            raise SessionNotFoundError("this session can no longer be resumed")
        await self.settled(parked)
        if self.parked.get(session_id) is not parked:  # expired or taken while we waited
            raise SessionNotFoundError("this session can no longer be resumed")
        del self.parked[session_id]
        if parked.expiry is not None:
            parked.expiry.cancel()
        return parked.session

    async def settled(self, parked: Parked) -> None:
        """Wait (bounded) until ``parked``'s detach has finished finalizing its open utterance."""
        try:
            async with asyncio.timeout(self.services.settings.drain_timeout_s):
                await parked.settled.wait()
        except TimeoutError:
            raise SessionBusyError(
                "the session is still finishing its last utterance; retry shortly", retry_after=2.0
            ) from None

    async def repark(self, session: StreamSession, window: float) -> None:
        """A resume was taken but its socket never opened: the session is resumable again."""
        sid = session.session_id
        parked = self.parked[sid] = Parked(session, asyncio.Event())
        parked.expiry = asyncio.get_running_loop().call_later(window, self._expire_soon, sid)
        parked.settled.set()

    async def dropped(self, session: StreamSession) -> None:
        """``session`` ended for good: nothing outside the process to forget."""

    def _expire_soon(self, session_id: str) -> None:
        self._spawn(self._expire(session_id), f"expire-{session_id}")

    async def _expire(self, session_id: str) -> None:
        parked = self.parked.pop(session_id, None)
        if parked is None:
            return
        if parked.expiry is not None:
            parked.expiry.cancel()
        log.info("resume window over; releasing session", extra={"session_id": session_id})
        await self._release(parked.session)

    async def close(self) -> None:
        """Release every session still parked here (each once settled, bounded)."""
        for session_id in list(self.parked):
            parked = self.parked.get(session_id)
            if parked is not None:
                # bounded: releasing aborts a finalization stuck behind a model that no longer answers
                with contextlib.suppress(SessionBusyError):
                    await self.settled(parked)
            await self._expire(session_id)


class DurableParking(Parking):
    """Parked in the shared state: written through while live, resumable on any instance (including after
    this one died) while this instance's heartbeat says the sessions it holds are its own."""

    def __init__(self, services: Services, spawn: Spawn, release: Release, load: LoadMeter) -> None:
        super().__init__(services, spawn, release)
        self._durable = DurableSessions(services)
        self._load = load
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def durable(self) -> DurableSessions:
        return self._durable

    def started(self, session: StreamSession) -> None:
        if session.on_result is None:  # a new session (a claimed one is written through already)
            self._spawn(self._write_through(session), f"durable-{session.session_id}")

    async def _write_through(self, session: StreamSession) -> None:
        """Start a new session's durable record (this instance beating first, so the claim is valid)."""
        journal = self._durable.journal(session)
        await self._beating()
        await journal.touch()

    async def _beating(self) -> None:
        """This instance's heartbeat is running (the sessions it holds are its own only while it beats)."""
        if self._heartbeat is None:
            self._heartbeat = self._spawn(self._durable.run(), "durable-heartbeat")
            await self._durable.beat()

    async def _store(self, session: StreamSession, window: float) -> None:
        """Finish every final of the session (each written through), then release it to any instance."""
        finalized = False
        try:
            # bounded: a failed model leaves the finals queue undrained; then the audio is not claimed done
            async with asyncio.timeout(self.services.settings.drain_timeout_s):
                await session.drain()
            finalized = True
        except (StreamerError, TimeoutError) as e:
            log.warning("parking without finishing: %r", e, extra={"session_id": session.session_id})
        finally:
            journal = self._durable.forget(session)
            await session.abort()
        if journal is not None:
            await journal.park(window, finalized=finalized)

    def _stored(self, parked: Parked, window: float) -> None:
        # parked in the shared state now, for any instance; its slot expires unless resumed
        sid = parked.session.session_id
        if self.parked.get(sid) is parked:
            del self.parked[sid]

    async def take(self, session_id: str, key_id: str) -> StreamSession:
        parked = self.parked.get(session_id)
        if parked is not None and parked.session.key_id == key_id:
            await self.settled(parked)  # parked here a moment ago: its state is written once settled
        await self._beating()
        state, history = await self._durable.claim(session_id, key_id)
        return self._durable.restore(session_id, state, history, self._load)

    async def repark(self, session: StreamSession, window: float) -> None:
        journal = self._durable.forget(session)
        if journal is not None:
            await journal.park(window)

    async def dropped(self, session: StreamSession) -> None:
        await self._durable.drop(session)

    async def close(self) -> None:
        self._durable.stop()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await super().close()
