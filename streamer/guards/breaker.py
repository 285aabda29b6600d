"""A circuit breaker: stop calling a failing dependency, then let one probe find out if it recovered.

CLOSED counts consecutive failures; at ``failure_threshold`` it opens. OPEN refuses everything until
``reset_timeout_s`` has passed, then turns HALF_OPEN and lets exactly one probe through. The probe's success
closes it; its failure opens it again for another ``reset_timeout_s``.

The breaker is synchronous and thread-safe (the batcher reports from its model thread); ``call`` is the
asyncio convenience around it. ``on_change`` runs outside the internal lock, so it may read the breaker.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streamer.guards.clock import Clock, monotonic

__all__ = ["BreakerError", "BreakerOpenError", "BreakerState", "BreakerTimeoutError", "CircuitBreaker"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class BreakerState(enum.Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerError(Exception):
    """Base class for errors raised by :meth:`CircuitBreaker.call`."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class BreakerOpenError(BreakerError):
    """The breaker refused the call without making it; ``retry_after`` is a hint in seconds."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(name, f"circuit {name!r} is open; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class BreakerTimeoutError(BreakerError, TimeoutError):
    """The call exceeded ``call_timeout_s``; it was cancelled and counted as a failure."""

    def __init__(self, name: str, timeout_s: float) -> None:
        super().__init__(name, f"call through circuit {name!r} timed out after {timeout_s}s")
        self.timeout_s = timeout_s


class CircuitBreaker:
    """Fail fast while a dependency is down. See the module docstring for the state machine."""

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        call_timeout_s: float | None = None,
        clock: Clock = monotonic,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold}")
        if reset_timeout_s < 0:
            raise ValueError(f"reset_timeout_s must not be negative, not {reset_timeout_s}")
        if call_timeout_s is not None and call_timeout_s <= 0:
            raise ValueError(f"call_timeout_s must be positive, not {call_timeout_s}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.call_timeout_s = call_timeout_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_started_at: float | None = None

    # -- reading -----------------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; an OPEN breaker whose timeout has passed reads (and becomes) HALF_OPEN."""
        with self._lock:
            changed = self._maybe_half_open()
            state = self._state
        self._notify(changed)
        return state

    @property
    def failures(self) -> int:
        """Consecutive failures counted since the last success (or reset)."""
        return self._failures

    @property
    def opened_at(self) -> float | None:
        """Clock time at which the breaker last opened; None while CLOSED."""
        return self._opened_at

    def retry_after(self) -> float:
        """Seconds a refused caller should wait before trying again (0 while CLOSED)."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return 0.0
            if self._state is BreakerState.OPEN:
                assert self._opened_at is not None
                return max(0.0, self._opened_at + self.reset_timeout_s - self._clock())
            # HALF_OPEN: the probe is out; its answer (or its timeout) decides.
            return self.call_timeout_s if self.call_timeout_s is not None else self.reset_timeout_s

    # -- deciding ----------------------------------------------------------------------------------------

    def allow(self) -> bool:
        """Whether a call may go ahead now. In HALF_OPEN, exactly one caller (the probe) gets True.

        A probe that never reports back (its caller was cancelled, say) is presumed lost after
        ``reset_timeout_s`` and another probe is let through, so the breaker cannot stick half-open.
        """
        with self._lock:
            changed = self._maybe_half_open()
            allowed = self._state is BreakerState.CLOSED
            if self._state is BreakerState.HALF_OPEN:
                now = self._clock()
                lost = (
                    self._probe_started_at is not None
                    and now - self._probe_started_at >= self.reset_timeout_s
                )
                if self._probe_started_at is None or lost:
                    self._probe_started_at = now
                    allowed = True
        self._notify(changed)
        return allowed

    def record_success(self) -> None:
        """A call succeeded: clears the failure count; a successful probe closes the breaker."""
        changed: BreakerState | None = None
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                changed = self._set(BreakerState.CLOSED)
            if self._state is BreakerState.CLOSED:
                self._failures = 0
            # A late success while OPEN (a call admitted before it opened) proves little: stay open.
        self._notify(changed)

    def record_failure(self) -> None:
        """A call failed: counts it; at the threshold (or on a failed probe) the breaker opens."""
        changed: BreakerState | None = None
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
            ):
                changed = self._set(BreakerState.OPEN)
        if changed is not None:
            log.warning("circuit %s opened after %d consecutive failures", self.name, self._failures)
        self._notify(changed)

    def reset(self) -> None:
        """Force CLOSED with no failures counted (an operator's override)."""
        with self._lock:
            self._failures = 0
            changed = self._set(BreakerState.CLOSED)
        self._notify(changed)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` through the breaker.

        Raises :class:`BreakerOpenError` at once when not allowed, and :class:`BreakerTimeoutError` (a
        failure) when ``call_timeout_s`` passes. Any other exception is recorded as a failure and re-raised.
        Cancellation of the caller is not the dependency's fault: it is not counted, and a cancelled probe
        frees the half-open slot for the next caller.
        """
        if not self.allow():
            raise BreakerOpenError(self.name, self.retry_after())
        try:
            if self.call_timeout_s is None:
                result = await fn()
            else:
                result = await asyncio.wait_for(fn(), self.call_timeout_s)
        except TimeoutError as e:
            self.record_failure()
            if self.call_timeout_s is None:
                raise
            raise BreakerTimeoutError(self.name, self.call_timeout_s) from e
        except asyncio.CancelledError:
            self._abandon_probe()
            raise
        except Exception:
            self.record_failure()
            raise
        self.record_success()
        return result

    # -- internals ---------------------------------------------------------------------------------------

    def _abandon_probe(self) -> None:
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._probe_started_at = None

    def _maybe_half_open(self) -> BreakerState | None:
        """OPEN -> HALF_OPEN once the reset timeout has passed. Call with the lock held."""
        if self._state is BreakerState.OPEN:
            assert self._opened_at is not None
            if self._clock() - self._opened_at >= self.reset_timeout_s:
                return self._set(BreakerState.HALF_OPEN)
        return None

    def _set(self, state: BreakerState) -> BreakerState | None:
        """Move to ``state``; returns it if that was a change (for ``_notify``). Call with the lock held."""
        if state is self._state:
            return None
        self._state = state
        self._probe_started_at = None
        if state is BreakerState.OPEN:
            self._opened_at = self._clock()
        elif state is BreakerState.CLOSED:
            self._opened_at = None
            self._failures = 0
        return state

    def _notify(self, changed: BreakerState | None) -> None:
        if changed is None:
            return
        log.info("circuit %s is now %s", self.name, changed.value)
        if self._on_change is not None:
            self._on_change(self.name, changed)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value}, failures={self._failures})"
