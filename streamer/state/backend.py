"""Shared state for limits that must hold across server instances: concurrent sessions, daily audio,
single-use token ids and admin-created keys; and sessions' durable state (resume on any instance).

:class:`StateBackend` is the interface; :class:`MemoryBackend` serves one process (and tests), and
``streamer.state.redis_backend.RedisBackend`` serves a fleet. Every check-and-update is atomic: the memory
backend's critical sections contain no ``await``, the Redis backend runs them as Lua scripts.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from streamer.guards.clock import Clock
from streamer.guards.keys import KeyRecord

__all__ = [
    "DAY_S",
    "BackendUnavailableError",
    "Claim",
    "MemoryBackend",
    "OutageLog",
    "QuotaDecision",
    "SessionRecord",
    "StateBackend",
    "seconds_to_utc_midnight",
]

log = logging.getLogger(__name__)

DAY_S = 86_400
# Floating-point slack for the audio quota: ten charges of 0.1 s must fit a 1.0 s limit.
AUDIO_EPSILON = 1e-9


class BackendUnavailableError(Exception):
    """The state backend could not be reached; the edge applies its fail-open/fail-closed policy."""


class OutageLog:
    """Whether an outage of the state backend has been reported: its start and its end are each worth one
    log line, not one per backend call (with two sessions, ten lines a second)."""

    def __init__(self) -> None:
        self.down = False

    def failed(self) -> bool:
        """A call failed: True if this begins an outage (log it)."""
        began, self.down = not self.down, True
        return began

    def succeeded(self) -> bool:
        """A call succeeded: True if this ends an outage (log it)."""
        ended, self.down = self.down, False
        return ended


@dataclass(frozen=True)
class QuotaDecision:
    """The answer to a quota check, with what the edge needs for ``X-RateLimit-*`` headers.

    For sessions ``limit``/``remaining`` are slot counts (ints) and ``reset_s`` is the time until the
    oldest held slot expires; for audio they are seconds and ``reset_s`` is the time until UTC midnight.
    None means unlimited.
    """

    allowed: bool
    limit: int | float | None
    remaining: int | float | None
    reset_s: float


@dataclass(frozen=True)
class SessionRecord:
    """A session's durable state as stored: ``state`` and ``messages`` are opaque text to the backend
    (``streamer.session.durable`` owns their meaning); ``owner`` is the instance holding the session, or
    ``""`` while it is parked."""

    state: str
    messages: list[str]
    owner: str


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`StateBackend.claim_session_state`: ``record`` is set when ``claimed``;
    ``busy`` means another live instance holds the session."""

    outcome: Literal["claimed", "busy", "missing"]
    record: SessionRecord | None = None


class StateBackend(Protocol):
    """Atomic, shareable state behind the quotas. All methods may raise BackendUnavailableError."""

    async def ping(self) -> None: ...

    async def acquire_session(
        self, key_id: str, session_id: str, limit: int | None, ttl_s: float
    ) -> QuotaDecision: ...

    async def refresh_session(self, key_id: str, session_id: str, ttl_s: float) -> bool: ...

    async def release_session(self, key_id: str, session_id: str) -> None: ...

    async def active_sessions(self, key_id: str) -> int: ...

    async def charge_audio(self, key_id: str, seconds: float, daily_limit: float | None) -> QuotaDecision: ...

    async def audio_used(self, key_id: str) -> float: ...

    async def consume_jti(self, jti: str, ttl_s: float) -> bool: ...

    async def put_key(self, rec: KeyRecord) -> None: ...

    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    async def list_keys(self) -> list[KeyRecord]: ...

    async def revoke_key(self, key_id: str) -> bool: ...

    async def beat(self, instance_id: str, ttl_s: float) -> None: ...

    async def save_session_state(
        self,
        session_id: str,
        owner: str,
        state: str,
        append: Sequence[str],
        keep: int,
        ttl_s: float,
        *,
        release: bool = False,
    ) -> bool: ...

    async def claim_session_state(self, session_id: str, owner: str, ttl_s: float) -> Claim: ...

    async def load_session_state(self, session_id: str) -> SessionRecord | None: ...

    async def drop_session_state(self, session_id: str, owner: str) -> None: ...

    async def close(self) -> None: ...


def seconds_to_utc_midnight(now: float) -> float:
    """Seconds from the epoch time ``now`` to the next UTC midnight."""
    return (math.floor(now / DAY_S) + 1) * DAY_S - now


def check_ttl(ttl_s: float) -> None:
    """Reject TTLs that would make a slot or token id immortal or instantly dead."""
    if not ttl_s > 0 or not math.isfinite(ttl_s):
        raise ValueError(f"ttl_s must be a positive finite number of seconds, not {ttl_s!r}")


def check_charge(seconds: float, daily_limit: float | None) -> None:
    """Reject negative or non-finite charges (a negative one would refund quota) and negative limits."""
    if not seconds >= 0 or not math.isfinite(seconds):
        raise ValueError(f"cannot charge {seconds!r} seconds of audio")
    if daily_limit is not None and not daily_limit >= 0:
        raise ValueError(f"daily_limit must be None (unlimited) or >= 0, not {daily_limit!r}")


def check_keep(keep: int) -> None:
    """Reject a history bound that keeps nothing (a Redis LTRIM with -0 would keep everything)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")


def check_limit(limit: int | None) -> None:
    """Reject negative session limits (None is unlimited; 0 admits nobody)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None (unlimited) or >= 0, not {limit}")


class MemoryBackend:
    """A single-process :class:`StateBackend`. ``clock`` is wall time (epoch seconds): days are UTC days."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._sessions: dict[str, dict[str, float]] = {}  # key_id -> session_id -> expires_at
        self._audio: dict[str, tuple[int, float]] = {}  # key_id -> (UTC day number, seconds used)
        self._jtis: dict[str, float] = {}  # jti -> expires_at
        self._jti_expiry: list[tuple[float, str]] = []  # a heap, so pruning costs only what expired
        self._keys: dict[str, KeyRecord] = {}
        self._instances: dict[str, float] = {}  # instance id -> heartbeat expires_at
        self._states: dict[str, tuple[SessionRecord, float]] = {}  # session id -> (record, expires_at)

    async def ping(self) -> None:
        """Always reachable."""

    def _live_slots(self, key_id: str, now: float) -> dict[str, float]:
        slots = self._sessions.setdefault(key_id, {})
        for session_id in [s for s, expires in slots.items() if expires <= now]:
            del slots[session_id]
        return slots

    async def acquire_session(
        self, key_id: str, session_id: str, limit: int | None, ttl_s: float
    ) -> QuotaDecision:
        """Hold a slot for ``session_id`` if fewer than ``limit`` are held (re-acquiring refreshes)."""
        check_ttl(ttl_s)
        check_limit(limit)
        now = self._clock()
        slots = self._live_slots(key_id, now)
        allowed = session_id in slots or limit is None or len(slots) < limit
        if allowed:
            slots[session_id] = now + ttl_s
        remaining = None if limit is None else max(0, limit - len(slots))
        reset_s = min(slots.values()) - now if slots else 0.0
        return QuotaDecision(allowed, limit, remaining, reset_s)

    async def refresh_session(self, key_id: str, session_id: str, ttl_s: float) -> bool:
        """Extend a held slot's life to ``ttl_s`` from now; a slot already expired stays gone (False)."""
        check_ttl(ttl_s)
        now = self._clock()
        slots = self._live_slots(key_id, now)
        if session_id not in slots:
            return False
        slots[session_id] = now + ttl_s
        return True

    async def release_session(self, key_id: str, session_id: str) -> None:
        """Give a slot back (idempotent)."""
        slots = self._sessions.get(key_id)
        if slots is not None:
            slots.pop(session_id, None)
            if not slots:
                del self._sessions[key_id]

    async def active_sessions(self, key_id: str) -> int:
        """Slots held now."""
        return len(self._live_slots(key_id, self._clock()))

    def _used_today(self, key_id: str, day: int) -> float:
        stored = self._audio.get(key_id)
        return stored[1] if stored is not None and stored[0] == day else 0.0

    async def charge_audio(self, key_id: str, seconds: float, daily_limit: float | None) -> QuotaDecision:
        """Add ``seconds`` to today's usage unless that would pass ``daily_limit``."""
        check_charge(seconds, daily_limit)
        now = self._clock()
        day = math.floor(now / DAY_S)
        used = self._used_today(key_id, day)
        allowed = daily_limit is None or used + seconds <= daily_limit + AUDIO_EPSILON
        if allowed:
            used += seconds
            self._audio[key_id] = (day, used)
        remaining = None if daily_limit is None else max(0.0, daily_limit - used)
        return QuotaDecision(allowed, daily_limit, remaining, seconds_to_utc_midnight(now))

    async def audio_used(self, key_id: str) -> float:
        """Audio seconds charged today (UTC)."""
        return self._used_today(key_id, math.floor(self._clock() / DAY_S))

    async def consume_jti(self, jti: str, ttl_s: float) -> bool:
        """True the first time ``jti`` is seen within ``ttl_s``; False on any replay."""
        check_ttl(ttl_s)
        now = self._clock()
        while self._jti_expiry and self._jti_expiry[0][0] <= now:
            expires, old = heapq.heappop(self._jti_expiry)
            if self._jtis.get(old) == expires:
                del self._jtis[old]
        if jti in self._jtis:
            return False
        self._jtis[jti] = now + ttl_s
        heapq.heappush(self._jti_expiry, (now + ttl_s, jti))
        return True

    async def put_key(self, rec: KeyRecord) -> None:
        """Store (or replace) a key record."""
        self._keys[rec.key_id] = rec

    async def get_key(self, key_id: str) -> KeyRecord | None:
        """The record for ``key_id``, revoked or not; None if unknown."""
        return self._keys.get(key_id)

    async def list_keys(self) -> list[KeyRecord]:
        """All stored records, oldest first."""
        return sorted(self._keys.values(), key=lambda r: (r.created_at, r.key_id))

    async def revoke_key(self, key_id: str) -> bool:
        """Mark a key revoked; False if there is no such key."""
        rec = self._keys.get(key_id)
        if rec is None:
            return False
        self._keys[key_id] = replace(rec, revoked=True)
        return True

    async def beat(self, instance_id: str, ttl_s: float) -> None:
        """This instance is alive for ``ttl_s`` more seconds (its claims on sessions hold that long)."""
        check_ttl(ttl_s)
        self._instances[instance_id] = self._clock() + ttl_s

    def _alive(self, instance_id: str, now: float) -> bool:
        return self._instances.get(instance_id, 0.0) > now

    def _state(self, session_id: str, now: float) -> SessionRecord | None:
        stored = self._states.get(session_id)
        if stored is None or stored[1] <= now:
            self._states.pop(session_id, None)
            return None
        return stored[0]

    async def save_session_state(
        self,
        session_id: str,
        owner: str,
        state: str,
        append: Sequence[str],
        keep: int,
        ttl_s: float,
        *,
        release: bool = False,
    ) -> bool:
        """Write ``state`` and append ``append`` (keeping the last ``keep`` messages) if ``owner`` holds the
        session or it does not exist yet; ``release`` leaves it parked (owner ``""``). False: someone else
        holds it (this instance lost the session and must not write)."""
        check_ttl(ttl_s)
        check_keep(keep)
        now = self._clock()
        current = self._state(session_id, now)
        if current is not None and current.owner != owner:
            return False
        messages = [*(current.messages if current else []), *append][-keep:]
        record = SessionRecord(state, messages, "" if release else owner)
        self._states[session_id] = (record, now + ttl_s)
        return True

    async def claim_session_state(self, session_id: str, owner: str, ttl_s: float) -> Claim:
        """Take the session for ``owner`` if it is parked, already ``owner``'s, or held by an instance
        whose heartbeat has lapsed (it died); ``ttl_s`` is the record's life from now."""
        check_ttl(ttl_s)
        now = self._clock()
        current = self._state(session_id, now)
        if current is None:
            return Claim("missing")
        if current.owner not in ("", owner) and self._alive(current.owner, now):
            return Claim("busy")
        record = replace(current, owner=owner)
        self._states[session_id] = (record, now + ttl_s)
        return Claim("claimed", record)

    async def load_session_state(self, session_id: str) -> SessionRecord | None:
        """The stored record, whoever holds it; None if unknown or expired."""
        return self._state(session_id, self._clock())

    async def drop_session_state(self, session_id: str, owner: str) -> None:
        """Forget the session (it ended) unless another instance holds it now (idempotent)."""
        current = self._state(session_id, self._clock())
        if current is not None and current.owner in ("", owner):
            del self._states[session_id]

    async def close(self) -> None:
        """Nothing to release."""
