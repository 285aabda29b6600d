"""Expected model load: what the speech model must do per second for the sessions held, measured.

Admission used to react to latency after the damage was done: a burst of simultaneous starts got in
before any batch was slow. Instead, each session is expected to need its share of speech (measured once it
has streamed a while, a prior before) times the measured model cost of a second of speech (all of it:
finals, speculative finals, partials, fallback decodes). The sum against the model's capacity says
whether one more session fits, before latency breaks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from streamer.guards.clock import Clock, monotonic

# share of a session's audio that is speech, before it has streamed long enough to measure its own
PRIOR_SPEECH_SHARE = 0.6
MEASURED_AFTER_S = 10.0
MIN_SPEECH_SHARE = 0.05  # an idle session still sends audio through the VAD and may start talking
# fallback model seconds any session or key may spend beyond its budget: one hard utterance is rescued
FALLBACK_GRACE_S = 1.0


# a key using more than this many times its fair share of the model is the cause of an overload
OVER_SHARE = 1.5


@dataclass(frozen=True)
class KeyLoad:
    """One key's part of the model time measured over the window (admission reads it)."""

    share: float  # the key's fraction of the model seconds spent
    fair: float  # its fair fraction: 1 / the keys that spent model time (counting it)
    top: float  # the largest fraction any key spent

    @property
    def others_exceed(self) -> bool:
        """Whether the model's load is another key's excess, not this key's use."""
        return self.share < self.fair and self.top > OVER_SHARE * self.fair


class LoadMeter:
    """Model seconds spent per second of speech transcribed, over a sliding window (event loop only), in
    all and per key; and the sessions' and keys' fallback budget (:class:`FallbackBudget`)."""

    def __init__(self, clock: Clock = monotonic, window_s: float = 60.0, min_speech_s: float = 10.0) -> None:
        self._clock = clock
        self.window_s = window_s
        self.min_speech_s = min_speech_s
        self._events: deque[tuple[float, float, float, str]] = deque()  # (time, model s, speech s, key)
        self._by_key: dict[str, float] = {}  # model seconds per key within the window
        self.fallback = FallbackBudget(clock, window_s)

    def record(self, *, model_s: float = 0.0, speech_s: float = 0.0, key: str = "") -> None:
        self._events.append((self._clock(), model_s, speech_s, key))
        self._by_key[key] = self._by_key.get(key, 0.0) + model_s
        self._trim()

    def _trim(self) -> None:
        horizon = self._clock() - self.window_s
        while self._events and self._events[0][0] < horizon:
            _, model_s, _, key = self._events.popleft()
            left = self._by_key.get(key, 0.0) - model_s
            if left > 1e-9:
                self._by_key[key] = left
            else:
                self._by_key.pop(key, None)

    def key_load(self, key: str) -> KeyLoad:
        """``key``'s share of the model time spent within the window."""
        self._trim()
        total = sum(self._by_key.values())
        if total <= 0:
            return KeyLoad(share=0.0, fair=1.0, top=0.0)
        spenders = len(self._by_key) + (key not in self._by_key)
        return KeyLoad(
            share=self._by_key.get(key, 0.0) / total,
            fair=1.0 / spenders,
            top=max(self._by_key.values()) / total,
        )

    def cost_per_speech_s(self) -> float | None:
        """Model seconds per second of speech, or None until enough speech was measured."""
        self._trim()
        speech = sum(e[2] for e in self._events)
        if speech < self.min_speech_s:
            return None
        return sum(e[1] for e in self._events) / speech


class FallbackBudget:
    """Fallback decodes are paid for in model seconds per second of speech, per session and per key.

    Crafted audio (reversed speech) fails the first decode of nearly every utterance and would run the
    whole fallback ladder each time: ten times the model time of real speech. Each session and each key
    may spend, within the window, ``ratio`` fallback model seconds per second of its speech plus
    :data:`FALLBACK_GRACE_S`; once either is spent, an utterance keeps what its first decode gave.
    Pure, clock injected; event loop only.
    """

    def __init__(self, clock: Clock = monotonic, window_s: float = 60.0) -> None:
        self._clock = clock
        self.window_s = window_s
        self._events: dict[str, deque[tuple[float, float, float]]] = {}  # name -> (time, speech s, spent s)
        self._swept = clock()

    def allows(self, key: str, session_id: str, ratio: float) -> bool:
        """Whether the session and its key may spend on another fallback decode now."""
        return all(self._left(name, ratio) > 0 for name in (f"key:{key}", f"session:{session_id}"))

    def record_speech(self, key: str, session_id: str, speech_s: float) -> None:
        self._add(key, session_id, speech_s, 0.0)

    def charge(self, key: str, session_id: str, model_s: float) -> None:
        self._add(key, session_id, 0.0, model_s)

    def _add(self, key: str, session_id: str, speech_s: float, spent_s: float) -> None:
        now = self._clock()
        if now - self._swept > self.window_s:  # accounts idle for a window (ended sessions) are forgotten
            self._swept = now
            for name in [n for n, events in self._events.items() if events[-1][0] < now - self.window_s]:
                del self._events[name]
        for name in (f"key:{key}", f"session:{session_id}"):
            self._events.setdefault(name, deque()).append((now, speech_s, spent_s))

    def _left(self, name: str, ratio: float) -> float:
        events = self._events.get(name)
        if events is None:
            return FALLBACK_GRACE_S
        horizon = self._clock() - self.window_s
        while events and events[0][0] < horizon:
            events.popleft()
        if not events:
            del self._events[name]
            return FALLBACK_GRACE_S
        return FALLBACK_GRACE_S + ratio * sum(e[1] for e in events) - sum(e[2] for e in events)


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
