"""Admission control: whether a new session may start now. Pure: it reads numbers, never internals.

The capacity check reads a :class:`ModelQueue` (the batcher's public statistics) and the ASR
breaker's state; the per-key session rate and the demo page's rate per client address are token buckets
kept here (a bounded number of them, never forgetting a throttled one: ``ratelimit.BucketTable``). Each
refusal names its reason (the ``refusals`` metric label) and carries the domain error the edge reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from streamer.errors import ModelUnavailableError, OverloadedError, RateLimitedError, StreamerError
from streamer.guards.breaker import BreakerState
from streamer.guards.clock import Clock, monotonic
from streamer.guards.load import PRIOR_SPEECH_SHARE, KeyLoad
from streamer.guards.ratelimit import BucketTable

__all__ = ["MAX_RATE_BUCKETS", "Admission", "AdmissionLimits", "ModelQueue", "Refusal", "model_load"]

# Buckets kept per rate (keys, addresses); a full table forgets full, then idle unthrottled ones first.
MAX_RATE_BUCKETS = 10_000
# a batcher latency older than this says nothing about the load now
RECENT_BATCH_S = 5.0
# Seconds of model input (padded windows) per second of a session's speech: partials re-decode the
# utterance so far every partial_interval_ms, speculative finals decode it at pauses, finals once more,
# and every decode is padded to its length bucket. It depends on the speech and the segmenter, not on
# the CPU; the CPU's part is the calibrated cost of a second of input (ModelQueue.cost_per_input_s).
# It falls as load grows (partials are spaced out): on the corpus bench 8.3-8.8 for one session, 4.8-5.7
# at 16 synchronized sessions, 3.4-4.8 at 32, on two AMD EPYCs (BENCHMARKS.md, "Admission on speech").
# Admission binds near capacity, so the prior is the figure there. (It was 10 while calibration timed
# low noise, whose decode is one token: that underestimated a second of input by 2.5 times.)
INPUT_PER_SPEECH_S = 5.0


class ModelQueue(Protocol):
    """The model batcher's load as admission reads it, taken in one step (the pipeline's
    ``BatcherSnapshot`` is one; admission does not import the pipeline)."""

    @property
    def hung(self) -> bool: ...
    @property
    def finals_pending(self) -> int: ...  # final jobs holding a slot (queued or running)
    @property
    def max_pending_finals(self) -> int: ...
    @property
    def latency_ewma_s(self) -> float: ...
    @property
    def last_batch_at(self) -> float: ...  # the batcher's clock; 0.0 before the first batch
    @property
    def workers(self) -> int: ...  # model calls that can run at once
    @property
    def cost_per_input_s(self) -> float | None: ...  # model seconds per second of input; None: unmeasured
    @property
    def cores(self) -> float | None: ...  # the workers at once, in calls alone (shared CPU); None: workers


def model_load(live_sessions: int, batcher: ModelQueue, load: float | None) -> float | None:
    """The model's expected busy fraction for ``live_sessions``, as a fraction of its capacity (all its
    workers busy): ``load`` (model seconds a second, measured from the sessions' own speech) when known,
    else the calibrated cost of a second of model input on this CPU times the input a session's speech
    makes the model decode, over what the workers running at once are worth (on a machine shared with
    other work, less than one call alone each: ``ModelQueue.cores``); None while neither was measured."""
    if load is not None:
        return load / batcher.workers
    if batcher.cost_per_input_s is None:
        return None
    per_session = PRIOR_SPEECH_SHARE * INPUT_PER_SPEECH_S * batcher.cost_per_input_s
    cores = batcher.workers if batcher.cores is None else min(batcher.workers, batcher.cores)
    return live_sessions * per_session / cores


class Refusal(Exception):
    """A new session is refused: ``reason`` labels the metric, ``error`` is what the client is told."""

    def __init__(self, reason: str, error: StreamerError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


@dataclass(frozen=True)
class AdmissionLimits:
    max_sessions: int
    saturation_latency_s: float
    session_rate_per_key_per_min: float  # 0 = off
    demo_sessions_per_min: float = 6.0  # per client address
    auth_failures_per_min: float = 10.0  # per client address; 0 = off
    # the model's busy fraction that admission plans for: above it, queues grow and latency with them
    max_model_load: float = 0.85
    # resume tokens per key and minute; 0 = off. Each resume re-opens real-time pacing for the audio the
    # drop cut off (docs/security.md), so a key may not drop and resume in a loop.
    resume_rate_per_key_per_min: float = 0.0


class Admission:
    """Capacity and rate checks for new sessions, per process."""

    def __init__(
        self, limits: AdmissionLimits, clock: Clock = monotonic, max_buckets: int = MAX_RATE_BUCKETS
    ) -> None:
        self.limits = limits
        self._clock = clock
        self.max_buckets = max_buckets
        self._session_rates = self._table(limits.session_rate_per_key_per_min)
        self._resume_rates = self._table(limits.resume_rate_per_key_per_min)
        self._demo_rates = self._table(limits.demo_sessions_per_min)
        self._auth_failures = self._table(limits.auth_failures_per_min)

    def check_capacity(
        self,
        *,
        draining: bool,
        live_sessions: int,
        batcher: ModelQueue,
        breaker_state: BreakerState | None,
        breaker_retry_after: float = 0.0,
        load_with_new: float | None = None,
        key_load: KeyLoad | None = None,
    ) -> None:
        """Refuse new work rather than make every session slower; raises :class:`Refusal`.

        ``load_with_new`` is the model's expected busy seconds a second with one more session (see
        ``guards/load.py``), None while the sessions' cost of speech has not been measured; until then
        the load is predicted from the model's calibrated cost on this CPU (:func:`model_load`), so a
        synchronized burst of starts is refused, with Retry-After, at the point the CPU can serve. An
        idle server never refuses for load: with no session live, whatever the last sessions left behind
        is history.

        ``key_load`` is the asking key's part of the model time. A load that another key's excess causes
        is charged to that key: a key under its fair share is not refused for load while some key uses
        more than :data:`~streamer.guards.load.OVER_SHARE` times its own (the batcher serves the lighter
        keys first, so their sessions keep their latency) as long as the load without that key would
        fit; the heavy key's new sessions are refused. The session limit and a failed model refuse
        everyone.
        """
        if draining:
            raise Refusal("draining", OverloadedError("the server is shutting down", retry_after=5.0))
        if live_sessions >= self.limits.max_sessions:
            raise Refusal(
                "max_sessions", OverloadedError("the server is at its session limit", retry_after=5.0)
            )
        # OPEN only: a HALF_OPEN breaker needs a session's audio to probe the model with
        if batcher.hung or breaker_state is BreakerState.OPEN:
            wait = 5.0 if batcher.hung or breaker_state is None else breaker_retry_after
            error = ModelUnavailableError(
                "the transcription model is unavailable", retry_after=max(1.0, wait)
            )
            raise Refusal("model_unavailable", error)
        load = model_load(live_sessions + 1, batcher, load_with_new)
        if live_sessions == 0 or self._anothers_excess(key_load, load):
            return
        if load is not None and load > self.limits.max_model_load:
            raise Refusal(
                "predicted_overload",
                OverloadedError("the server has no room for another live session", retry_after=5.0),
            )
        recent = self._clock() - batcher.last_batch_at < RECENT_BATCH_S
        if recent and batcher.latency_ewma_s > self.limits.saturation_latency_s:
            raise Refusal("saturated", OverloadedError("the server is saturated", retry_after=5.0))
        if batcher.finals_pending > batcher.max_pending_finals // 2:
            raise Refusal("queue_full", OverloadedError("the transcription queue is full", retry_after=5.0))

    def _anothers_excess(self, key_load: KeyLoad | None, load_with_new: float | None) -> bool:
        """Whether the load is another key's excess, and the load of everyone else would fit."""
        if key_load is None or not key_load.others_exceed:
            return False
        return load_with_new is None or load_with_new * (1.0 - key_load.top) <= self.limits.max_model_load

    def check_session_rate(self, key_id: str) -> None:
        """New sessions per key and minute (``session_rate_per_key_per_min``; 0 = off).

        The bucket holds one minute's allowance, so a client may start that many sessions at once.
        """
        per_min = self.limits.session_rate_per_key_per_min
        table = self._session_rates
        if table is None:
            return
        bucket = table.bucket(key_id)
        if bucket is None or not bucket.try_take():
            error = RateLimitedError(
                f"this key may start at most {per_min:g} sessions per minute",
                code="session_rate_exceeded",
                retry_after=table.retry_after() if bucket is None else bucket.retry_after(),
            )
            raise Refusal("session_rate", error)

    def check_resume_rate(self, key_id: str) -> None:
        """Resumes per key and minute (``resume_rate_per_key_per_min``; 0 = off), a minute's allowance
        at once: a client on a flaky network resumes a few times a minute, not dozens."""
        table = self._resume_rates
        if table is None:
            return
        bucket = table.bucket(key_id)
        if bucket is None or not bucket.try_take():
            error = RateLimitedError(
                f"this key may resume at most {self.limits.resume_rate_per_key_per_min:g} sessions a minute",
                code="resume_rate_exceeded",
                retry_after=table.retry_after() if bucket is None else bucket.retry_after(),
            )
            raise Refusal("resume_rate", error)

    def check_demo_rate(self, address: str) -> None:
        """The demo page's sessions per client address (``demo_sessions_per_min``)."""
        table = self._demo_rates
        if table is None:
            return
        bucket = table.bucket(address)
        if bucket is None or not bucket.try_take():
            error = RateLimitedError(
                "too many demo sessions from this address; try again shortly",
                code="demo_rate_limited",
                retry_after=table.retry_after() if bucket is None else bucket.retry_after(),
            )
            raise Refusal("demo_rate", error)

    def check_auth_failures(self, address: str) -> None:
        """Refuse an address that has failed authentication ``auth_failures_per_min`` times within about
        a minute: guessing keys or tokens online gets a few tries a minute, not thousands. While the
        table is full of throttled addresses, an address it does not know is refused as well (see
        :class:`BucketTable`): it could not be throttled."""
        table = self._auth_failures
        if table is None:
            return
        bucket = table.get(address)
        if bucket is None and not table.full():
            return
        if bucket is not None and not bucket.throttled:
            return
        error = RateLimitedError(
            "too many failed authentications from this address; try again later",
            code="auth_rate_limited",
            retry_after=table.retry_after() if bucket is None else bucket.retry_after(),
        )
        raise Refusal("auth_failures", error)

    def record_auth_failure(self, address: str) -> None:
        bucket = self._auth_failures.bucket(address) if self._auth_failures is not None else None
        if bucket is not None:
            bucket.try_take()

    def _table(self, per_min: float) -> BucketTable | None:
        """Buckets of one minute's allowance each; None when the rate is off (0)."""
        if per_min <= 0:
            return None
        return BucketTable(per_min / 60.0, max(1.0, per_min), self.max_buckets, self._clock)

    @property
    def tracked_keys(self) -> int:
        return len(self._session_rates) if self._session_rates is not None else 0
