"""Token buckets: request rates (messages per second) and audio pacing (audio seconds per second)."""

from __future__ import annotations

import heapq
import math

from streamer.guards.clock import Clock, monotonic

__all__ = ["AudioPacer", "BucketTable", "TokenBucket"]

# Refill arithmetic is floating point: a caller who waits exactly ``retry_after()`` must then succeed.
_EPSILON = 1e-9


class TokenBucket:
    """Holds up to ``burst`` tokens, refilled continuously at ``rate_per_s``; starts full.

    Refusals take nothing, so a client that backs off is not also charged for its refused attempts.
    """

    def __init__(self, rate_per_s: float, burst: float, clock: Clock = monotonic) -> None:
        if not rate_per_s > 0 or not math.isfinite(rate_per_s):
            raise ValueError(f"rate_per_s must be a positive finite number, not {rate_per_s!r}")
        if not burst > 0 or not math.isfinite(burst):
            raise ValueError(f"burst must be a positive finite number, not {burst!r}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()
        self._taken_at = self._updated

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
        self._updated = max(self._updated, now)

    @property
    def tokens(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._tokens

    def try_take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are all available now; otherwise take none and return False."""
        if n < 0:
            raise ValueError(f"cannot take a negative number of tokens ({n})")
        self._refill()
        if self._tokens + _EPSILON < n:
            return False
        self._tokens = max(0.0, self._tokens - n)
        self._taken_at = self._updated
        return True

    def retry_after(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens would be available (0 if now; ``inf`` if ``n`` exceeds the burst)."""
        if n > self.burst + _EPSILON:
            return math.inf
        self._refill()
        return max(0.0, (n - self._tokens) / self.rate_per_s)

    @property
    def throttled(self) -> bool:
        """Whether the next single take would be refused."""
        return self.tokens + _EPSILON < 1.0

    @property
    def taken_at(self) -> float:
        """When tokens were last taken (or the bucket made), by its clock; reading it changes nothing."""
        return self._taken_at


class BucketTable:
    """One :class:`TokenBucket` per name (a client address, a key id), at most ``max_size`` of them.

    Forgetting a bucket gives its name a full one, so a full table forgets the least harmful first: full
    buckets (the same as new ones), then the longest idle of those that are not throttled. A throttled
    bucket is never forgotten: otherwise anyone able to present ``max_size`` other names could buy a
    throttled name fresh tries. If every bucket is throttled, :meth:`bucket` has no room for a new name
    (None) and the caller refuses it; that lasts until the first bucket refills a token (``retry_after``).
    Each sweep frees a tenth of the table, so the scan is paid once per many new names.
    """

    def __init__(self, rate_per_s: float, burst: float, max_size: int, clock: Clock = monotonic) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_size = max_size
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._full_until = -math.inf  # no room for new names before this time (every bucket throttled)

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, name: str) -> TokenBucket | None:
        """``name``'s bucket if it has one (a name without one has a full allowance)."""
        return self._buckets.get(name)

    def bucket(self, name: str) -> TokenBucket | None:
        """``name``'s bucket, made if needed; None when the table is full of throttled buckets."""
        bucket = self._buckets.get(name)
        if bucket is None:
            if not self._room():
                return None
            bucket = self._buckets[name] = TokenBucket(self.rate_per_s, self.burst, self._clock)
        return bucket

    def full(self) -> bool:
        """Whether a new name would be refused now (every bucket throttled)."""
        return not self._room()

    def retry_after(self) -> float:
        """Seconds until a new name would find room (0 if now)."""
        return 0.0 if self._room() else max(0.0, self._full_until - self._clock())

    def _room(self) -> bool:
        if len(self._buckets) < self.max_size:
            return True
        now = self._clock()
        if now < self._full_until:
            return False
        table = self._buckets
        full: list[str] = []
        unthrottled: list[tuple[float, str]] = []
        for name, bucket in table.items():  # one pass: reading a bucket's tokens refills it
            tokens = bucket.tokens
            if tokens >= bucket.burst:
                full.append(name)
            elif tokens + _EPSILON >= 1.0:
                unthrottled.append((bucket.taken_at, name))
        for name in full:
            del table[name]
        excess = len(table) - (self.max_size - max(1, self.max_size // 10))
        if excess > 0:
            for _, name in heapq.nsmallest(excess, unthrottled):
                del table[name]
        if len(table) < self.max_size:
            return True
        self._full_until = now + min(b.retry_after() for b in table.values())
        return False


class AudioPacer:
    """Refuses audio arriving faster than ``max_realtime_factor`` x real time beyond ``burst_s`` of slack.

    A token bucket counted in audio seconds: it refills at ``max_realtime_factor`` audio seconds per wall
    second and holds at most ``burst_s``, so a client may catch up after a network stall (up to the burst)
    but cannot stream a file at full speed.
    """

    def __init__(self, max_realtime_factor: float, burst_s: float, clock: Clock = monotonic) -> None:
        self.max_realtime_factor = max_realtime_factor
        self.burst_s = burst_s
        self._bucket = TokenBucket(max_realtime_factor, burst_s, clock)

    def admit(self, audio_s: float) -> bool:
        """Account for a chunk of ``audio_s`` seconds of audio; False (nothing charged) if too fast."""
        return self._bucket.try_take(audio_s)

    def retry_after(self, audio_s: float) -> float:
        """Seconds until a chunk of ``audio_s`` seconds would be admitted."""
        return self._bucket.retry_after(audio_s)

    @property
    def available_s(self) -> float:
        """Audio seconds that would be admitted right now."""
        return self._bucket.tokens
