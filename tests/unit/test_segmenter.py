"""The segmenter as a pure state machine: synthetic probabilities in, events and exact audio out.

Every window is 512 samples filled with its own index, so an utterance's audio says exactly which
windows it kept (``window_ids``) and any gap, duplicate or reordering shows up as a list mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.pipeline.segmenter import (
    Ended,
    Event,
    Paused,
    Segmenter,
    SegmenterConfig,
    Started,
    State,
    Utterance,
)
from streamer.pipeline.vad import WINDOW

SPEECH, SILENCE, BETWEEN = 0.9, 0.05, 0.4  # BETWEEN: under the start threshold, over the end threshold

# every duration a whole number of 32 ms windows, so the counts below are exact
CONFIG = SegmenterConfig(
    start_threshold=0.5,
    end_threshold=0.35,
    start_ms=64,  # 2 windows
    min_speech_ms=160,  # 5 windows
    pre_roll_ms=128,  # 4 windows
    end_silence_ms=320,  # 10 windows
    pause_ms=160,  # 5 windows
    tail_ms=64,  # 2 windows
    max_utterance_s=15.0,
)
START_W, MIN_W, PRE_W, END_W, PAUSE_W, TAIL_W = 2, 5, 4, 10, 5, 2


class Driver:
    """Feeds a segmenter windows numbered 0, 1, 2, ... and keeps every event."""

    def __init__(self, config: SegmenterConfig = CONFIG) -> None:
        self.seg = Segmenter(config)
        self.next = 0
        self.events: list[Event] = []

    def feed(self, probs: Sequence[float]) -> list[Event]:
        windows = [np.full(WINDOW, float(self.next + k), dtype=np.float32) for k in range(len(probs))]
        self.next += len(probs)
        events = self.seg.feed(np.asarray(probs, dtype=np.float32), windows)
        self.events += events
        return events

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def window_ids(audio: np.ndarray) -> list[int]:
    assert audio.dtype == np.float32 and audio.size % WINDOW == 0
    rows = audio.reshape(-1, WINDOW)
    assert (rows == rows[:, :1]).all(), "a window was cut or mixed"
    return [int(v) for v in rows[:, 0]]


def utterance_ids(utt: Utterance) -> list[int]:
    """The window ids of an utterance, checked against its own sample span."""
    ids = window_ids(utt.audio)
    assert ids == list(range(utt.start_sample // WINDOW, utt.end_sample // WINDOW))
    return ids


def test_config_rounds_durations_to_windows() -> None:
    assert [CONFIG.windows(ms) for ms in (64, 160, 128, 320, 160, 64)] == [
        START_W,
        MIN_W,
        PRE_W,
        END_W,
        PAUSE_W,
        TAIL_W,
    ]
    assert CONFIG.windows(1) == 1  # never zero windows


def test_sample_clock_advances_one_window_per_window() -> None:
    d = Driver()
    assert d.seg.samples == 0
    d.feed([SILENCE] * 3)
    assert d.seg.samples == 3 * WINDOW
    d.feed([SPEECH] * 7)
    d.feed([])
    assert d.seg.samples == 10 * WINDOW


def test_isolated_spikes_do_not_start_speech() -> None:
    d = Driver()
    assert d.feed([SPEECH, SILENCE] * 20) == []
    assert d.seg.state is State.SILENCE
    # under the start threshold is not speech yet, however long it lasts (hysteresis)
    assert d.feed([BETWEEN] * 20) == []
    assert d.seg.open_segment_id is None


def test_start_needs_start_ms_of_consecutive_speech() -> None:
    d = Driver(SegmenterConfig(start_ms=96, pre_roll_ms=0))  # 3 windows
    assert d.feed([SPEECH, SPEECH, SILENCE, SPEECH, SPEECH]) == []  # the run restarts after a dip
    events = d.feed([SPEECH])
    assert len(events) == 1 and isinstance(events[0], Started)
    assert d.seg.state is State.SPEECH


def test_start_threshold_is_inclusive() -> None:
    d = Driver()
    assert d.feed([0.5]) == []
    assert [type(e) for e in d.feed([0.5])] == [Started]


def test_pre_roll_is_kept_and_start_sample_points_at_it() -> None:
    d = Driver()
    d.feed([SILENCE] * 10)  # windows 0..9
    events = d.feed([SPEECH] * START_W)  # 10, 11: speech confirmed on window 11
    assert events == [Started(1, (12 - PRE_W) * WINDOW)]
    d.feed([SPEECH] * 6 + [SILENCE] * END_W)
    (ended,) = d.of(Ended)
    assert isinstance(ended, Ended) and ended.utterance is not None
    ids = utterance_ids(ended.utterance)
    # pre-roll (8, 9 silent, 10, 11 onset) + speech 12..17 + the tail of the silence
    assert ids == list(range(12 - PRE_W, 18 + TAIL_W))
    assert ended.end_sample == ended.utterance.end_sample == (18 + TAIL_W) * WINDOW


def test_pre_roll_at_stream_start_is_what_there_is() -> None:
    d = Driver()
    (started,) = d.feed([SPEECH] * START_W)
    assert started == Started(1, 0)
    assert window_ids(d.seg.open_audio().audio) == [0, 1]  # type: ignore[union-attr]


def test_dip_between_thresholds_does_not_end_speech() -> None:
    d = Driver()
    d.feed([SPEECH] * 4)
    assert d.feed([BETWEEN] * (END_W * 3)) == []  # no Paused, no Ended
    assert d.seg.state is State.SPEECH
    d.feed([SILENCE] * END_W)
    (ended,) = d.of(Ended)
    assert ended.utterance is not None  # type: ignore[union-attr]
    # the between-threshold windows count as voiced: all of them are kept
    assert utterance_ids(ended.utterance)[-1] == 4 + END_W * 3 - 1 + TAIL_W  # type: ignore[union-attr]


def test_end_after_end_silence_exactly() -> None:
    d = Driver()
    d.feed([SPEECH] * 8)
    assert not d.of(Ended)
    d.feed([SILENCE] * (END_W - 1))
    assert not d.of(Ended)
    events = d.feed([SILENCE])
    assert [type(e) for e in events] == [Ended]
    assert events[0].reason == "silence"  # type: ignore[union-attr]
    assert d.seg.state is State.SILENCE and d.seg.open_segment_id is None


def test_pause_is_reported_once_and_matches_the_final_utterance() -> None:
    d = Driver()
    d.feed([SILENCE] * 3 + [SPEECH] * 12)
    assert d.feed([SILENCE] * (PAUSE_W - 1)) == []
    (paused,) = d.feed([SILENCE])
    assert isinstance(paused, Paused)
    for _ in range(END_W - PAUSE_W - 1):
        assert d.feed([SILENCE]) == []  # not again while the silence goes on
    (ended,) = d.feed([SILENCE])
    assert isinstance(ended, Ended) and ended.utterance is not None
    # this identity is what lets the server reuse the transcription it started at the pause
    assert paused.segment_id == ended.segment_id == ended.utterance.segment_id
    assert paused.utterance.end_sample == ended.utterance.end_sample == ended.end_sample
    assert paused.utterance.start_sample == ended.utterance.start_sample
    np.testing.assert_array_equal(paused.utterance.audio, ended.utterance.audio)
    assert utterance_ids(ended.utterance) == list(range(5 - PRE_W, 15 + TAIL_W))  # onset ends on window 4


def test_speech_resuming_after_a_pause_makes_a_longer_utterance() -> None:
    d = Driver()
    d.feed([SPEECH] * 10 + [SILENCE] * PAUSE_W)
    (first,) = d.of(Paused)
    d.feed([SPEECH] * 8 + [SILENCE] * END_W)
    pauses, (ended,) = d.of(Paused), d.of(Ended)
    assert len(pauses) == 2  # one per pause
    assert isinstance(ended, Ended) and ended.utterance is not None and isinstance(first, Paused)
    assert ended.segment_id == first.segment_id and len(d.of(Started)) == 1
    assert ended.end_sample > first.utterance.end_sample
    ids = utterance_ids(ended.utterance)
    assert ids[: len(utterance_ids(first.utterance))] == utterance_ids(first.utterance)
    assert ids == list(range(0, 10 + PAUSE_W + 8 + TAIL_W))  # the pause's silence is kept inside
    np.testing.assert_array_equal(pauses[1].utterance.audio, ended.utterance.audio)  # type: ignore[union-attr]


def test_too_little_speech_ends_without_an_utterance() -> None:
    d = Driver()
    d.feed([SILENCE] * 6)
    (started,) = d.feed([SPEECH] * START_W)
    d.feed([SPEECH] * (MIN_W - START_W - 1) + [SILENCE] * END_W)  # one voiced window short
    assert not d.of(Paused)  # nothing worth transcribing early either
    (ended,) = d.of(Ended)
    assert isinstance(ended, Ended) and isinstance(started, Started)
    assert ended.utterance is None and ended.reason == "silence"
    assert ended.end_sample == d.seg.samples  # the whole (silent) segment is accounted for
    # exactly enough voiced windows does produce one
    d.feed([SPEECH] * MIN_W + [SILENCE] * END_W)
    assert d.of(Ended)[-1].utterance is not None  # type: ignore[union-attr]


def test_segments_are_numbered_and_do_not_overlap() -> None:
    d = Driver()
    for _ in range(3):
        d.feed([SILENCE] * 12 + [SPEECH] * 10 + [SILENCE] * END_W)
    ended = [e for e in d.of(Ended) if isinstance(e, Ended)]
    assert [e.segment_id for e in d.of(Started)] == [1, 2, 3] == [e.segment_id for e in ended]
    spans = [(e.utterance.start_sample, e.utterance.end_sample) for e in ended if e.utterance]
    assert len(spans) == 3
    assert all(a[1] <= b[0] for a, b in pairwise(spans))


@pytest.mark.parametrize("dip_at", [70, 100, 125])
def test_max_length_split_loses_and_repeats_nothing(dip_at: int) -> None:
    config = SegmenterConfig(**{**CONFIG.__dict__, "max_utterance_s": 4.096})
    limit = config.windows(config.max_utterance_s * 1000)
    assert limit == 128
    speech = 300
    probs = [0.95] * speech
    # the quietest window of the last two seconds before the limit (still speech); 125 is the very
    # window on which the limit is reached, so the next segment starts empty
    probs[dip_at] = 0.6
    d = Driver(config)
    d.feed([SILENCE] * 5 + probs + [SILENCE] * END_W)
    assert len(d.of(Paused)) == 1  # only in the closing silence
    kinds = [type(e) for e in d.events if not isinstance(e, Paused)]
    assert kinds == [Started, Ended] * (len(kinds) // 2) and len(kinds) >= 6
    ended = [e for e in d.of(Ended) if isinstance(e, Ended)]
    started = [e for e in d.of(Started) if isinstance(e, Started)]
    assert [e.reason for e in ended] == ["max_length"] * (len(ended) - 1) + ["silence"]
    # every split starts the next segment exactly where the previous one stopped
    for before, after in zip(ended, started[1:], strict=False):
        assert before.utterance is not None
        assert after.start_sample == before.end_sample == before.utterance.end_sample
    # the first segment is cut just after the dip
    assert ended[0].utterance is not None
    assert utterance_ids(ended[0].utterance)[-1] == 5 + dip_at
    # no audio is lost or duplicated across the splits
    kept = [i for e in ended for i in utterance_ids(e.utterance)]  # type: ignore[arg-type]
    assert kept == list(range(5 + START_W - PRE_W, 5 + speech + TAIL_W))
    assert all(e.utterance is not None and e.utterance.audio.size <= limit * WINDOW for e in ended)


def test_a_split_inside_a_pause_does_not_turn_silence_into_speech() -> None:
    """The remainder of a force split is judged by its own probabilities, not counted as voiced.

    When the limit is reached during a pause the quietest window is in that pause, so the remainder is
    silence; if speech does not resume, it must not end as an utterance of its own and reach the model.
    """
    config = SegmenterConfig(**{**CONFIG.__dict__, "max_utterance_s": 0.992, "pre_roll_ms": 64})
    assert config.windows(config.max_utterance_s * 1000) == 31
    d = Driver(config)
    d.feed([SPEECH] * 22 + [SILENCE] * 9)  # the limit (31 windows) falls inside a 9-window pause
    assert [type(e) for e in d.events] == [Started, Paused, Ended, Started]
    first = d.of(Ended)[0]
    assert isinstance(first, Ended) and first.reason == "max_length" and first.utterance is not None
    assert utterance_ids(first.utterance) == list(range(0, 23))  # the speech and one silent window
    d.feed([SILENCE] * END_W * 2)
    rest = d.of(Ended)[-1]
    assert isinstance(rest, Ended) and rest.segment_id == 2
    # windows 23.. are all silence: nothing to transcribe
    assert rest.utterance is None, f"silence became an utterance: {utterance_ids(rest.utterance)}"


def test_finish_ends_open_speech_keeping_all_of_it() -> None:
    d = Driver()
    d.feed([SILENCE] * 2 + [SPEECH] * 9)
    ended = d.seg.finish("commit")
    assert isinstance(ended, Ended) and ended.reason == "commit" and ended.utterance is not None
    # the speech was cut off mid-word: keep every window, not only up to a tail after the last voiced
    assert utterance_ids(ended.utterance) == list(range(0, 11))
    assert ended.end_sample == d.seg.samples
    assert d.seg.state is State.SILENCE and d.seg.finish("commit") is None


def test_finish_after_some_silence_trims_to_the_tail() -> None:
    d = Driver()
    d.feed([SPEECH] * 9 + [SILENCE] * (TAIL_W + 2))
    ended = d.seg.finish("close")
    assert isinstance(ended, Ended) and ended.utterance is not None
    assert utterance_ids(ended.utterance) == list(range(0, 9 + TAIL_W))


def test_finish_too_short_speech_has_no_utterance() -> None:
    d = Driver()
    d.feed([SPEECH] * 3)
    ended = d.seg.finish("close")
    assert isinstance(ended, Ended) and ended.utterance is None
    assert ended.end_sample == 3 * WINDOW


def test_finish_in_silence_forgets_a_half_onset() -> None:
    d = Driver()
    d.feed([SILENCE, SPEECH])  # one window of onset: not yet speech
    assert d.seg.finish("commit") is None
    assert d.feed([SPEECH]) == []  # the onset restarted: one more window is not enough
    assert [type(e) for e in d.feed([SPEECH])] == [Started]


def test_open_audio_is_the_open_segment_so_far() -> None:
    d = Driver()
    assert d.seg.open_audio() is None
    d.feed([SILENCE] * 5 + [SPEECH] * 6)
    utt = d.seg.open_audio()
    assert utt is not None and utt.segment_id == d.seg.open_segment_id == 1
    assert utterance_ids(utt) == list(range(5 + START_W - PRE_W, 11))


@settings(max_examples=150, deadline=None)
@given(
    runs=st.lists(
        st.tuples(st.sampled_from([0.0, 0.2, 0.4, 0.5, 0.7, 1.0]), st.integers(1, 25)),
        min_size=1,
        max_size=30,
    ),
    max_windows=st.integers(8, 80),
    finish=st.booleans(),
)
def test_any_sequence_gives_well_formed_segments(
    runs: list[tuple[float, int]], max_windows: int, finish: bool
) -> None:
    config = SegmenterConfig(**{**CONFIG.__dict__, "max_utterance_s": max_windows * 0.032})
    d = Driver(config)
    for prob, count in runs:
        d.feed([prob] * count)
    assert d.seg.samples == d.next * WINDOW
    if finish and (last := d.seg.finish("close")) is not None:
        d.events.append(last)
    open_id: int | None = None
    previous_end = 0
    for event in d.events:
        if isinstance(event, Started):
            assert open_id is None, "started twice"
            open_id = event.segment_id
            assert event.start_sample >= previous_end and event.start_sample % WINDOW == 0
        elif isinstance(event, Paused):
            assert event.segment_id == open_id
            utterance_ids(event.utterance)
        else:
            assert event.segment_id == open_id, "ended a segment that was not open"
            open_id = None
            assert event.end_sample <= d.seg.samples
            if event.utterance is not None:
                assert event.utterance.end_sample == event.end_sample
                assert event.utterance.audio.size <= max_windows * WINDOW
                assert utterance_ids(event.utterance)[0] * WINDOW >= previous_end
            previous_end = event.end_sample


# ---- a cut at a sentence-ending pause (continuous speech)


def _paused(d: Driver) -> Utterance:
    pauses = d.of(Paused)
    assert pauses and isinstance(pauses[-1], Paused)
    return pauses[-1].utterance


def test_a_cut_after_speech_resumed_ends_at_the_pause_and_loses_nothing() -> None:
    d = Driver()
    d.feed([SILENCE] * 3 + [SPEECH] * 30 + [SILENCE] * 6 + [SPEECH] * 12)  # a 192 ms pause, then speech
    pause = _paused(d)
    assert d.of(Ended) == [] and d.seg.open_segment_id == 1
    events = d.seg.cut(1, pause.end_sample)
    assert [type(e) for e in events] == [Ended, Started]
    ended, started = events
    assert isinstance(ended, Ended) and isinstance(started, Started)
    assert ended.reason == "silence" and ended.utterance is not None
    assert ended.end_sample == pause.end_sample == started.start_sample  # the next one starts at the cut
    assert utterance_ids(ended.utterance) == utterance_ids(pause)  # exactly what was speculated on
    d.events += events
    d.feed([SPEECH] * 5 + [SILENCE] * END_W)
    last = d.of(Ended)[-1]
    assert isinstance(last, Ended) and last.segment_id == 2 and last.utterance is not None
    kept = utterance_ids(ended.utterance) + utterance_ids(last.utterance)
    first = 3 + START_W - PRE_W
    assert kept == list(range(first, 3 + 30 + 6 + 12 + 5 + TAIL_W)), "a sample lost or doubled at the cut"


def test_a_cut_inside_the_pause_leaves_its_silence_for_the_next_utterance() -> None:
    d = Driver()
    d.feed([SILENCE] * 3 + [SPEECH] * 30 + [SILENCE] * 7)
    pause = _paused(d)
    events = d.seg.cut(1, pause.end_sample)
    assert [type(e) for e in events] == [Ended] and d.seg.state is State.SILENCE
    d.events += events
    d.feed([SILENCE] * 2 * END_W)  # the silence goes on: no utterance is made of it
    assert len(d.of(Ended)) == 1
    d.feed([SPEECH] * 10 + [SILENCE] * END_W)
    second = d.of(Ended)[-1]
    assert isinstance(second, Ended) and second.segment_id == 2 and second.utterance is not None
    assert second.utterance.start_sample >= pause.end_sample  # its pre-roll is the pause's silence


def test_a_cut_that_no_longer_fits_the_open_segment_is_refused() -> None:
    d = Driver()
    d.feed([SILENCE] * 3 + [SPEECH] * 30 + [SILENCE] * 6 + [SPEECH] * 4)
    pause = _paused(d)
    assert d.seg.cut(7, pause.end_sample) == []  # another segment
    assert d.seg.cut(1, pause.end_sample + 100) == []  # not on a window's edge
    assert d.seg.cut(1, pause.end_sample + 1000 * WINDOW) == []  # audio not there yet
    assert d.seg.open_segment_id == 1 and d.of(Ended) == []


@pytest.mark.parametrize(
    "manual", [{"gated": False}, {"end_silence_ms": 3_600_000}], ids=["ungated", "commit-only"]
)
def test_manual_turns_are_never_cut(manual: dict[str, object]) -> None:
    d = Driver(SegmenterConfig(**{**CONFIG.__dict__, **manual}))
    d.feed([SILENCE] * 3 + [SPEECH] * 30 + [SILENCE] * 6 + [SPEECH] * 4)
    end = 33 * WINDOW  # where the pause's utterance would end
    assert d.seg.cut(1, end) == [] and d.seg.open_segment_id == 1
