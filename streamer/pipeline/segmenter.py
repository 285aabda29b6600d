"""Utterance segmentation: a pure state machine over 32 ms windows and their speech probabilities.

Hysteresis: speech starts after ``start_windows`` consecutive windows at or above ``start_threshold`` and
continues until ``end_silence`` of windows below ``end_threshold``. Pre-roll keeps the first phoneme; a
pause (shorter than the end-of-utterance silence) is reported so transcription can start early; a maximum
length force-splits long speech at its quietest recent window.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from streamer.pipeline.audio import MODEL_RATE, Audio
from streamer.pipeline.vad import WINDOW

WINDOW_MS = WINDOW * 1000 // MODEL_RATE
CLEAR_SPEECH_PROB = 0.8
NARROWBAND_RATE = 8000


class State(enum.Enum):
    SILENCE = "silence"
    SPEECH = "speech"


@dataclass(frozen=True)
class SegmenterConfig:
    start_threshold: float = 0.5
    end_threshold: float = 0.35
    start_ms: int = 64
    min_speech_ms: int = 200
    pre_roll_ms: int = 300
    end_silence_ms: int = 400
    pause_ms: int = 160
    hold_ms: int = 400  # extra silence a pause gets when the words so far do not end a sentence
    tail_ms: int = 128
    max_utterance_s: float = 15.0
    # False: manual turns (the client commits): the span between commits is one utterance, all of its
    # audio, whatever the VAD says (no speech gating, no pause, no end on silence); the VAD's scores
    # still measure how much of it is speech
    gated: bool = True

    def windows(self, ms: float) -> int:
        return max(1, round(ms / WINDOW_MS))

    def for_input_rate(self, sample_rate: int) -> SegmenterConfig:
        """Thresholds for audio that arrives at ``sample_rate``.

        Silero scores telephone-band speech (8 kHz, 300-3400 Hz) at 0.35-0.5 where wideband speech scores
        above 0.9, while silence and line noise stay under 0.05: at the wideband start threshold most
        8 kHz sentences were never opened (measured on the piper corpus's telephone variant: 2 of 3
        sentences lost). Narrowband input gets thresholds below that band.
        """
        if sample_rate > NARROWBAND_RATE:
            return self
        return dataclasses.replace(
            self,
            start_threshold=min(self.start_threshold, 0.3),
            end_threshold=min(self.end_threshold, 0.15),
        )


@dataclass(frozen=True)
class Started:
    segment_id: int
    start_sample: int


@dataclass(frozen=True)
class Paused:
    """Speech stopped for ``pause_ms``: the utterance as it would end now (may still resume)."""

    segment_id: int
    utterance: Utterance


@dataclass(frozen=True)
class Ended:
    """The utterance is over. ``utterance`` is None when it held too little speech to transcribe."""

    segment_id: int
    end_sample: int
    reason: str
    utterance: Utterance | None
    start_sample: int = 0  # where the segment started (an empty final for a too-short one says so)


@dataclass(frozen=True)
class Utterance:
    segment_id: int
    audio: Audio
    start_sample: int
    end_sample: int
    speech_ms: int = 0  # confidently voiced audio (VAD probability >= CLEAR_SPEECH_PROB) in it
    voiced_ms: int = 0  # audio the VAD scored as speech at all (at or above the end threshold)

    @property
    def duration_s(self) -> float:
        return self.audio.size / MODEL_RATE


Event = Started | Paused | Ended


@dataclass
class _Open:
    segment_id: int
    start_sample: int
    windows: list[Audio] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    voiced: int = 0
    last_voiced: int = -1  # index into windows of the last window at or above the end threshold
    silence_run: int = 0
    paused: bool = False
    held: bool = False  # this pause waits hold_ms longer before it ends the utterance
    awaiting: bool = False  # a verdict on this pause (does the sentence end here?) is on its way
    _audio: Audio = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    _copied: int = 0  # windows already copied into _audio

    def audio(self, count: int) -> Audio:
        """The first ``count`` windows as one array, without copying the whole segment on every call.

        Windows are appended to a buffer that doubles when full, so a partial request costs the new
        windows only (not the whole open utterance: that was quadratic in its length). The slice is a view
        whose samples never change: later windows land after it, and a grown buffer is a new array.
        """
        if self._copied < len(self.windows):
            need = len(self.windows) * WINDOW
            if need > self._audio.size:
                grown = np.zeros(max(need, 2 * self._audio.size, 64 * WINDOW), dtype=np.float32)
                grown[: self._copied * WINDOW] = self._audio[: self._copied * WINDOW]
                self._audio = grown
            for i in range(self._copied, len(self.windows)):
                self._audio[i * WINDOW : (i + 1) * WINDOW] = self.windows[i]
            self._copied = len(self.windows)
        return self._audio[: count * WINDOW]


class Segmenter:
    """Feed ``(probabilities, windows)`` from the VAD; get Started / Paused / Ended events."""

    def __init__(self, config: SegmenterConfig) -> None:
        self.config = config
        self.state = State.SILENCE
        self._pre_roll: deque[tuple[Audio, float]] = deque(maxlen=config.windows(config.pre_roll_ms))
        self._onset = 0
        self._open: _Open | None = None
        self._next_id = 1
        self.samples = 0  # windows consumed so far, in samples: the session's audio clock
        self._start_windows = config.windows(config.start_ms)
        self._pause_windows = config.windows(config.pause_ms)
        self._end_windows = config.windows(config.end_silence_ms)
        self._hold_windows = config.windows(config.hold_ms) if config.hold_ms > 0 else 0
        self._tail_windows = min(config.windows(config.tail_ms), self._pause_windows)
        self._min_voiced = config.windows(config.min_speech_ms)
        self._max_windows = config.windows(config.max_utterance_s * 1000)

    def feed(self, probs: np.ndarray, windows: list[Audio]) -> list[Event]:
        events: list[Event] = []
        for prob, window in zip(probs.tolist(), windows, strict=True):
            events.extend(self._step(prob, window))
            self.samples += WINDOW
        return events

    def _step(self, prob: float, window: Audio) -> list[Event]:
        cfg = self.config
        if self._open is None:
            self._pre_roll.append((window, prob))
            self._onset = self._onset + 1 if prob >= cfg.start_threshold or not cfg.gated else 0
            if self._onset < self._start_windows and cfg.gated:
                return []
            windows, probs = zip(*self._pre_roll, strict=True)
            return [self._start(list(windows), list(probs))]
        seg = self._open
        seg.windows.append(window)
        seg.probs.append(prob)
        events: list[Event] = []
        if not cfg.gated:
            seg.last_voiced = len(seg.windows) - 1
            seg.voiced += prob >= cfg.end_threshold
        elif prob >= cfg.end_threshold:
            seg.last_voiced = len(seg.windows) - 1
            seg.voiced += 1
            seg.silence_run = 0
            seg.paused = False
            seg.held = False
            seg.awaiting = False
        else:
            seg.silence_run += 1
            waits = seg.held or seg.awaiting  # an unfinished clause, or a verdict still on its way
            if seg.silence_run >= self._end_windows + (self._hold_windows if waits else 0):
                return [self._end("silence")]
            if seg.silence_run >= self._pause_windows and not seg.paused:
                seg.paused = True
                utt = self._utterance(seg)
                if utt is not None:
                    events.append(Paused(seg.segment_id, utt))
        if len(seg.windows) >= self._max_windows:
            events.extend(self._force_split())
        return events

    def _start(self, windows: list[Audio], probs: list[float], at: int | None = None) -> Started:
        """Open a segment over ``windows`` (pre-roll, or the remainder of a split) by their own scores.

        ``at`` is its first sample; by default the windows end with the one being stepped."""
        start = self.samples + WINDOW - len(windows) * WINDOW if at is None else at
        seg = _Open(self._next_id, max(0, start), list(windows), list(probs))
        voiced = [i for i, p in enumerate(probs) if p >= self.config.end_threshold]
        seg.voiced = len(voiced)
        seg.last_voiced = voiced[-1] if voiced and self.config.gated else len(probs) - 1
        seg.silence_run = len(probs) - 1 - seg.last_voiced
        self._next_id += 1
        self._open = seg
        self.state = State.SPEECH
        self._onset = 0
        self._pre_roll.clear()
        return Started(seg.segment_id, seg.start_sample)

    def _utterance(self, seg: _Open) -> Utterance | None:
        gated = self.config.gated
        if (seg.voiced if gated else len(seg.windows)) < self._min_voiced:
            return None
        keep = min(len(seg.windows), seg.last_voiced + 1 + self._tail_windows) if gated else len(seg.windows)
        audio = seg.audio(keep)
        clear = sum(p >= CLEAR_SPEECH_PROB for p in seg.probs[:keep])
        voiced = sum(p >= self.config.end_threshold for p in seg.probs[:keep])
        end = seg.start_sample + keep * WINDOW
        return Utterance(seg.segment_id, audio, seg.start_sample, end, clear * WINDOW_MS, voiced * WINDOW_MS)

    def _end(self, reason: str) -> Ended:
        seg = self._open
        assert seg is not None
        utt = self._utterance(seg)
        end = utt.end_sample if utt else seg.start_sample + len(seg.windows) * WINDOW
        self._open = None
        self.state = State.SILENCE
        return Ended(seg.segment_id, end, reason, utt, seg.start_sample)

    def _force_split(self) -> list[Event]:
        """Split an over-long utterance at the quietest window of its last two seconds."""
        seg = self._open
        assert seg is not None
        look = min(len(seg.probs) - 1, self.config.windows(2000))
        recent = seg.probs[-look:]
        cut = len(seg.probs) - look + int(np.argmin(recent)) + 1
        rest_windows, rest_probs = seg.windows[cut:], seg.probs[cut:]
        seg.windows, seg.probs = seg.windows[:cut], seg.probs[:cut]
        seg._copied = min(seg._copied, cut)
        seg.last_voiced = min(seg.last_voiced, cut - 1)
        seg.silence_run = 0
        ended = self._end("max_length")
        # the rest continues as a new segment, already inside speech
        started = self._start(rest_windows, rest_probs)
        return [ended, started]

    def cut(self, segment_id: int, end_sample: int) -> list[Event]:
        """End the open utterance at ``end_sample`` (where a pause began), even if speech resumed since.

        For a long utterance whose words up to that pause end a sentence: waiting for a silence long
        enough to end it would merge the next sentence into it (a reader's pauses between sentences are
        often shorter than ``end_silence_ms``). The audio after the cut is not lost: if it holds speech,
        it opens the next segment, already inside speech; if not, it is the silence before the next one.
        Returns the ``Ended`` (and ``Started``) events, or none if the segment or the cut is gone (it
        ended, was split, or its audio before ``end_sample`` is not all there) or no silence ends an
        utterance here (manual turns: the client's commits are the turns).
        """
        seg = self._open
        cfg = self.config
        manual = not cfg.gated or cfg.end_silence_ms >= cfg.max_utterance_s * 1000  # the client's commits
        if seg is None or seg.segment_id != segment_id or manual:
            return []
        cut = (end_sample - seg.start_sample) // WINDOW
        if (end_sample - seg.start_sample) % WINDOW or not 0 < cut <= len(seg.windows):
            return []
        voiced = [i for i, p in enumerate(seg.probs[:cut]) if p >= cfg.end_threshold]
        if len(voiced) < self._min_voiced:
            return []
        rest_windows, rest_probs = seg.windows[cut:], seg.probs[cut:]
        seg.windows, seg.probs = seg.windows[:cut], seg.probs[:cut]
        seg._copied = min(seg._copied, cut)
        seg.voiced = len(voiced)
        seg.last_voiced = voiced[-1]
        ended = self._end("silence")
        if any(p >= cfg.end_threshold for p in rest_probs):
            return [ended, self._start(rest_windows, rest_probs, at=end_sample)]
        for pair in zip(rest_windows, rest_probs, strict=True):
            self._pre_roll.append(pair)  # still the pause: the next segment's pre-roll
        return [ended]

    def open_audio(self) -> Utterance | None:
        """The open segment's audio so far (for partial hypotheses)."""
        seg = self._open
        if seg is None or not seg.windows:
            return None
        return Utterance(
            seg.segment_id,
            seg.audio(len(seg.windows)),
            seg.start_sample,
            seg.start_sample + len(seg.windows) * WINDOW,
        )

    def _at_pause(self, segment_id: int, end_sample: int) -> _Open | None:
        """The open segment if it is still in the pause whose utterance ends at ``end_sample``."""
        seg = self._open
        if seg is None or seg.segment_id != segment_id or not seg.paused:
            return None
        keep = min(len(seg.windows), seg.last_voiced + 1 + self._tail_windows)
        return seg if seg.start_sample + keep * WINDOW == end_sample else None

    def pausing(self, segment_id: int, end_sample: int) -> bool:
        """Whether the pause whose utterance ends at ``end_sample`` still lasts (speech has not resumed)."""
        return self._at_pause(segment_id, end_sample) is not None

    def await_verdict(self, segment_id: int, end_sample: int) -> None:
        """Do not end this pause at ``end_silence_ms`` before :meth:`release` or :meth:`hold` says
        whether the sentence ends here (at most ``hold_ms`` longer): the one who decodes the words so far
        may be slower than the silence."""
        seg = self._at_pause(segment_id, end_sample)
        if seg is not None and self._hold_windows:
            seg.awaiting = True

    def release(self, segment_id: int, end_sample: int) -> Ended | None:
        """The sentence ends at this pause: the utterance's end, if its silence is already long enough."""
        seg = self._at_pause(segment_id, end_sample)
        if seg is None or not seg.awaiting:
            return None
        seg.awaiting = False
        return self._end("silence") if seg.silence_run >= self._end_windows else None

    def hold(self, segment_id: int, end_sample: int) -> bool:
        """Let the current pause of ``segment_id`` run ``hold_ms`` longer before the utterance ends.

        For a pause whose words so far do not end a sentence (a comma, a clause): people pause there
        for longer than the end-of-utterance silence, and ending the utterance would cut the sentence in
        two finals. Only the pause that ``end_sample`` (the utterance as it stood at the pause) belongs
        to is held; speech resuming clears it. Returns whether the hold was applied.
        """
        seg = self._at_pause(segment_id, end_sample)
        if seg is None or self._hold_windows == 0:
            return False
        seg.held, seg.awaiting = True, False
        return True

    def continue_at(self, samples: int, next_segment_id: int) -> None:
        """Carry on another instance's clock and segment numbering (a session resumed there).

        Only before any audio: the pre-roll and the open segment belong to the old clock.
        """
        if self._open is not None or self._pre_roll:
            raise RuntimeError("continue_at() is for a segmenter that has not been fed yet")
        self.samples = samples
        self._next_id = next_segment_id

    @property
    def next_segment_id(self) -> int:
        """The id the next segment will get (a retuned segmenter carries the numbering on)."""
        return self._next_id

    @property
    def open_segment_id(self) -> int | None:
        return self._open.segment_id if self._open else None

    def finish(self, reason: str) -> Ended | None:
        """End the open utterance now (commit, close)."""
        if self._open is None:
            self._onset = 0
            return None
        seg = self._open
        if seg.silence_run < self._tail_windows and self.config.gated:
            seg.last_voiced = len(seg.windows) - 1 - self._tail_windows
        return self._end(reason)
