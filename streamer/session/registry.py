"""The one owner of a session's life: admit, attach, detach (park or release), resume, drain, close.

A session is *live* while a connection carries it and *parked* after its connection dropped without
``session.close``: it keeps finalizing what it had accepted, and a client that comes back with a resume
token within ``resume_window_s`` gets it again with the finals it missed. The registry owns the maps, the
expiry timers and every background task it starts, and joins them in :meth:`close`; it is started and
stopped by its own cleanup context (``streamer.app``).

A session is never in neither map while it is still resumable: :meth:`detach` moves it from live to
parked in one step, before it awaits anything, so a resume that arrives while the session is finishing
its open utterance finds it (and waits for that finishing) instead of a 404.

With shared state (``STREAMER_REDIS_URL``) sessions are also durable (:mod:`streamer.session.durable`):
written through as they change, parked in Redis rather than here, and resumed on whichever instance the
resume reaches, including after the serving instance died.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from streamer.errors import AuthError, RateLimitedError, StreamerError
from streamer.guards.admission import Admission, AdmissionLimits, Refusal
from streamer.guards.clock import Clock
from streamer.guards.keys import KeyRecord
from streamer.guards.load import PRIOR_SPEECH_SHARE, LoadMeter, expected_load
from streamer.protocol import SessionConfig, TranscriptFinal, TranslationFinal
from streamer.services import Services
from streamer.session.durable import DurableSessions, SessionBusyError
from streamer.session.ending import Endings, end_bound_s
from streamer.session.outbox import Outbox
from streamer.session.parking import SLOT_GRACE_S, DurableParking, Parked, Parking
from streamer.session.runtime import StreamSession
from streamer.session.validation import check_session_config
from streamer.state.backend import BackendUnavailableError, QuotaDecision

log = logging.getLogger(__name__)

# how long closing waits for the registry's background tasks (settlements, releases, finalizations)
CLOSE_TIMEOUT_S = 10.0


class Attachment(Protocol):
    """What the registry needs from whatever carries a session (the WebSocket connection, an adapter)."""

    async def hand_over(self) -> None:
        """A resume for this session arrived: let the session go, and return once it has."""

    async def shutdown(self) -> None:
        """Server shutdown: finalize and deliver what was accepted, then close."""


class SessionRegistry:
    """Every session this process holds, attached or parked, and the admission checks for new ones."""

    def __init__(self, services: Services, clock: Clock = time.monotonic) -> None:
        self.services = services
        s = services.settings
        # connections ending now, and those whose end overran its bounds (readiness)
        self.endings = Endings(end_bound_s(s), clock)
        self.admission = Admission(
            AdmissionLimits(
                max_sessions=s.max_sessions,
                saturation_latency_s=s.saturation_latency_s,
                session_rate_per_key_per_min=s.session_rate_per_key_per_min,
                resume_rate_per_key_per_min=s.resume_rate_per_key_per_min,
                demo_sessions_per_min=s.demo_sessions_per_min,
                auth_failures_per_min=s.auth_failures_per_min,
            ),
            clock,
        )
        self.load = LoadMeter(clock)
        self._live: dict[str, StreamSession] = {}
        self._connections: dict[str, Attachment] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.draining = False
        self._closed = False
        # with shared state: sessions written through and resumable on any instance (session/parking.py)
        self.parking = (
            DurableParking(services, self.spawn, self.release, self.load)
            if services.settings.redis_url
            else Parking(services, self.spawn, self.release)
        )
        self._parked = self.parking.parked  # the sessions waiting for a resume (owned by the parking)

    # ---- what is here (read-only views)

    @property
    def sessions(self) -> Mapping[str, StreamSession]:
        """Sessions attached to a connection now."""
        return MappingProxyType(self._live)

    @property
    def connections(self) -> Mapping[str, Attachment]:
        return MappingProxyType(self._connections)

    @property
    def parked(self) -> Mapping[str, StreamSession]:
        """Sessions waiting for a resume."""
        return MappingProxyType({sid: p.session for sid, p in self._parked.items()})

    @property
    def durable(self) -> DurableSessions | None:
        """The shared state's record of sessions, with ``STREAMER_REDIS_URL``."""
        return self.parking.durable

    def find(self, session_id: str) -> StreamSession | None:
        """A live or parked session."""
        live = self._live.get(session_id)
        if live is not None:
            return live
        parked = self._parked.get(session_id)
        return parked.session if parked is not None else None

    # ---- admission

    def _refuse(self, refusal: Refusal) -> StreamerError:
        self.services.metrics.refusals.labels(refusal.reason).inc()
        refusal.error.counted = True
        return refusal.error

    def check_capacity(self, resuming: str | None = None, key_id: str | None = None) -> None:
        """Raise the domain error that refuses a new session now, if any.

        Parked sessions count: each may come back at any moment without asking. A resume is admitted
        like a start; the session it brings back is not counted twice when this instance holds it.
        """
        breaker = self.services.breakers.get("asr")
        held = len(self._live) + len(self._parked)
        adds = 0 if resuming is not None and (resuming in self._live or resuming in self._parked) else 1
        try:
            self.admission.check_capacity(
                draining=self.draining,
                live_sessions=held + adds - 1,
                batcher=self.services.asr_batcher.snapshot(),
                breaker_state=breaker.state if breaker is not None else None,
                breaker_retry_after=breaker.retry_after() if breaker is not None else 0.0,
                load_with_new=self.expected_load(extra_sessions=adds),
                key_load=self.load.key_load(key_id) if key_id is not None else None,
            )
        except Refusal as r:
            raise self._refuse(r) from None

    def expected_load(self, extra_sessions: int = 0) -> float | None:
        """The model's expected busy fraction for the sessions held (live and parked) and ``extra`` new
        ones; None until the cost of a second of speech has been measured."""
        sessions = [*self._live.values(), *(p.session for p in self._parked.values())]
        shares = [s.speech_share for s in sessions] + [PRIOR_SPEECH_SHARE] * extra_sessions
        return expected_load(shares, self.load.cost_per_speech_s())

    def check_session_rate(self, key_id: str) -> None:
        try:
            self.admission.check_session_rate(key_id)
        except Refusal as r:
            raise self._refuse(r) from None

    def check_resume_rate(self, key_id: str) -> None:
        try:
            self.admission.check_resume_rate(key_id)
        except Refusal as r:
            raise self._refuse(r) from None

    def check_auth_failures(self, address: str) -> None:
        try:
            self.admission.check_auth_failures(address)
        except Refusal as r:
            raise self._refuse(r) from None

    def record_auth_failure(self, address: str) -> None:
        self.admission.record_auth_failure(address)

    def check_demo_rate(self, address: str) -> None:
        try:
            self.admission.check_demo_rate(address)
        except Refusal as r:
            raise self._refuse(r) from None

    async def reserve(self, key_id: str, max_sessions: int | None, session_id: str) -> QuotaDecision:
        """Capacity, then the key's concurrent-session slot (kept while the token is unused).

        Raises ``concurrent_sessions_exceeded`` (429) when the key has no slot left; the decision's
        numbers are on the error as ``quota``.
        """
        self.check_capacity(key_id=key_id)
        services = self.services
        open_quota = QuotaDecision(allowed=True, limit=None, remaining=None, reset_s=0.0)
        quota = await services.state.call(
            lambda: services.backend.acquire_session(
                key_id, session_id, max_sessions, services.tokens.ttl_s + SLOT_GRACE_S
            ),
            open_quota,
        )
        if not quota.allowed:
            raise ConcurrentSessionsError(quota)
        return quota

    def open(self, session_id: str, key_id: str, config: SessionConfig) -> StreamSession:
        """A new session for a reserved id (its token was just redeemed): capacity is checked again.
        One session id is never carried by two sockets here, whatever the shared state said."""
        if session_id in self._live or session_id in self._parked:
            raise AuthError("session token already used")
        self.check_capacity(key_id=key_id)
        return StreamSession(session_id, key_id, config, self.services, load=self.load)

    async def admit(self, key: KeyRecord, config: SessionConfig) -> StreamSession:
        """The config against the models, rate, capacity and quota for ``key``, then a new session (for
        surfaces without tokens: every adapter's config passes the same check as REST's)."""
        check_session_config(self.services, config)
        self.check_session_rate(key.key_id)
        session_id = self.services.tokens.new_session_id()
        await self.reserve(key.key_id, key.session_limit, session_id)
        return StreamSession(session_id, key.key_id, config, self.services, load=self.load)

    # ---- attach, detach, resume

    def attach(
        self, session: StreamSession, connection: Attachment, outbox: Outbox, last_seq: int | None = None
    ) -> list[TranscriptFinal | TranslationFinal]:
        """``connection`` carries ``session`` from now on; returns the finals to replay after ``last_seq``."""
        sid = session.session_id
        self._live[sid] = session
        self._connections[sid] = connection
        metrics = self.services.metrics
        metrics.active_sessions.inc()
        if last_seq is None:
            metrics.sessions_total.inc()
        self.parking.started(session)
        return session.attach(outbox, last_seq)

    def detach(self, session: StreamSession, connection: Attachment, *, ended: bool) -> asyncio.Task[None]:
        """``connection`` is gone: park the session, or release it (``ended``, draining, no window).

        The maps change now, before anything is awaited: the session is resumable from the moment it stops
        being live. The rest (finalizing the open utterance, which may wait for room in the session's
        bounded finals queue) runs in a task the registry owns, so a cancelled connection handler cannot
        cut it short; await the returned task to wait for it.
        """
        sid = session.session_id
        if self._connections.get(sid) is connection:
            del self._connections[sid]
        if self._live.pop(sid, None) is not None:
            self.services.metrics.active_sessions.dec()
        window = self.services.settings.resume_window_s
        # a session whose model failed cannot go on: resuming it would serve a zombie (issue 22, D2)
        if ended or session.failure is not None or self.draining or self._closed or window <= 0:
            return self.spawn(self.release(session), f"release-{sid}")
        parked = self._parked[sid] = Parked(session, asyncio.Event())
        log.info("session parked for %.0fs", window, extra={"session_id": sid})
        return self.spawn(self.parking.park(parked, window), f"park-{sid}")

    async def resume(self, session_id: str, key_id: str) -> StreamSession:
        """Take over the session a resume token names: parked, or still attached to a dying connection;
        with shared state, from any instance (claimed there, or from an instance that died)."""
        self.check_capacity(resuming=session_id, key_id=key_id)
        live = self._connections.get(session_id)
        if live is not None:
            try:  # bounded: its end's steps are (a connection stuck past them shows on /readyz)
                async with asyncio.timeout(self.endings.bound_s):
                    await live.hand_over()
            except TimeoutError:
                raise SessionBusyError("the session's connection is still closing; retry shortly") from None
        return await self.parking.take(session_id, key_id)

    async def repark(self, session: StreamSession) -> None:
        """A resume was taken but its socket never opened: keep the session resumable again."""
        await self.parking.repark(session, self.services.settings.resume_window_s)

    async def release(self, session: StreamSession) -> None:
        """End a session for good: stop its work and give back its key's concurrent-session slot."""
        await session.abort()
        await self.parking.dropped(session)
        try:
            await self.services.backend.release_session(session.key_id, session.session_id)
        except BackendUnavailableError as e:
            # the slot expires by itself (its TTL); until then it counts against the key
            log.warning(
                "could not release the session's slot (%s); it expires on its own",
                e,
                extra={"session_id": session.session_id},
            )

    # ---- background work and shutdown

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the registry owns: kept referenced, and joined by :meth:`close`."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout_s: float) -> None:
        """Refuse new sessions; finalize, deliver and close every attached one (1001) within ``timeout_s``."""
        self.draining = True
        connections = list(self._connections.values())
        if not connections:
            return
        log.info("draining %d sessions", len(connections))
        # past the timeout the connections' handlers are cancelled by the server's own shutdown; the
        # waits are the registry's tasks, joined (or cancelled) by close()
        ending = [self.spawn(c.shutdown(), "shutdown") for c in connections]
        await asyncio.wait(ending, timeout=timeout_s)

    async def close(self) -> None:
        """Release every parked session and join the background tasks (before the backend closes)."""
        self.draining = True
        self._closed = True
        await self.parking.close()
        # bounded: a task that outlives its cancel (a library that swallows one) must not hold shutdown
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_TIMEOUT_S
        while self._tasks:  # a task may spawn another while it finishes
            left = deadline - loop.time()
            if left <= 0:
                names = sorted(t.get_name() for t in self._tasks)
                log.error("%d background tasks still running at shutdown, abandoned: %s", len(names), names)
                for task in list(self._tasks):
                    task.cancel()
                return
            await asyncio.wait(list(self._tasks), timeout=left)


class ConcurrentSessionsError(RateLimitedError):
    """The key already holds all the concurrent sessions it may; ``quota`` has the numbers."""

    def __init__(self, quota: QuotaDecision) -> None:
        super().__init__(
            f"this key already has {quota.limit} concurrent sessions",
            code="concurrent_sessions_exceeded",
            retry_after=max(1.0, quota.reset_s),
        )
        self.quota = quota
