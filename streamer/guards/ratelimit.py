"""Token buckets: request rates (messages per second) and audio pacing (audio seconds per second)."""

from __future__ import annotations

import math

from streamer.guards.clock import Clock, monotonic

__all__ = ["AudioPacer", "TokenBucket"]

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
        return True

    def retry_after(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens would be available (0 if now; ``inf`` if ``n`` exceeds the burst)."""
        if n > self.burst + _EPSILON:
            return math.inf
        self._refill()
        return max(0.0, (n - self._tokens) / self.rate_per_s)


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
