"""Expected model load: what the speech model must do per second for the sessions held, measured.

Admission used to react to latency after the damage was done: a burst of simultaneous starts got in
before any batch was slow. Instead, each session is expected to need its share of speech (measured once it
has streamed a while, a prior before) times the measured model cost of a second of speech (all of it:
finals, speculative finals, partials, fallback decodes). The sum against the model's capacity says
whether one more session fits, before latency breaks.
"""

from __future__ import annotations

from collections import deque

from streamer.guards.clock import Clock, monotonic

# share of a session's audio that is speech, before it has streamed long enough to measure its own
PRIOR_SPEECH_SHARE = 0.6
MEASURED_AFTER_S = 10.0
MIN_SPEECH_SHARE = 0.05  # an idle session still sends audio through the VAD and may start talking


class LoadMeter:
    """Model seconds spent per second of speech transcribed, over a sliding window (event loop only)."""

    def __init__(self, clock: Clock = monotonic, window_s: float = 60.0, min_speech_s: float = 10.0) -> None:
        self._clock = clock
        self.window_s = window_s
        self.min_speech_s = min_speech_s
        self._events: deque[tuple[float, float, float]] = deque()  # (time, model s, speech s)

    def record(self, *, model_s: float = 0.0, speech_s: float = 0.0) -> None:
        self._events.append((self._clock(), model_s, speech_s))
        self._trim()

    def _trim(self) -> None:
        horizon = self._clock() - self.window_s
        while self._events and self._events[0][0] < horizon:
            self._events.popleft()

    def cost_per_speech_s(self) -> float | None:
        """Model seconds per second of speech, or None until enough speech was measured."""
        self._trim()
        speech = sum(e[2] for e in self._events)
        if speech < self.min_speech_s:
            return None
        return sum(e[1] for e in self._events) / speech


def speech_share(speech_s: float, audio_s: float) -> float:
    """A session's expected share of speech, from what it sent so far."""
    if audio_s < MEASURED_AFTER_S:
        return PRIOR_SPEECH_SHARE
    return min(1.0, max(MIN_SPEECH_SHARE, speech_s / audio_s))


def expected_load(shares: list[float], cost_per_speech_s: float | None) -> float | None:
    """The model's expected busy fraction for sessions with these speech shares (None: not measured)."""
    if cost_per_speech_s is None:
        return None
    return sum(shares) * cost_per_speech_s
