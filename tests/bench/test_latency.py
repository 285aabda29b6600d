"""Scoring a session from synthetic events: final latency, split, merged, lost sentences, first partials."""

from __future__ import annotations

from typing import Any

import pytest

from streamer_bench.latency import Score, chunk_span, percentile, score_session
from streamer_bench.script import Line

CHUNK_MS = 100
T0 = 1000.0  # chunk k was sent at T0 + k / 10
LINES = (
    Line(500, 2000, "keep your voice down"),
    Line(2500, 4200, "turn left at the bakery"),
    Line(5000, 6300, "the pilot announced it"),
)
CHUNKS = [T0 + k / 10 for k in range(80)]  # 8 s of audio sent


def final(start: float, end: float, at: float, text: str = "") -> tuple[float, dict[str, Any]]:
    event = {"type": "transcript.final", "audio_start_ms": start, "audio_end_ms": end, "text": text}
    return at, event


def sent(line: Line) -> float:
    """When the chunk holding the line's last sample went."""
    return CHUNKS[chunk_span(line, CHUNK_MS)[1]]


def test_each_sentence_waits_for_its_final() -> None:
    events = [
        final(200, 2100, sent(LINES[0]) + 0.4, "keep your voice down"),
        final(2200, 4300, sent(LINES[1]) + 0.7, "turn left at the bakery"),
        final(4700, 6400, sent(LINES[2]) + 1.2, "the pilot announced it"),
    ]
    score = score_session(LINES, CHUNKS, CHUNK_MS, events)
    assert score.latencies == pytest.approx([0.4, 0.7, 1.2])
    assert (score.sentences, score.finals, score.lost, score.split, score.merged) == (3, 3, 0, 0, 0)
    assert score.edits == 0 and score.ref_words == 13


def test_a_split_sentence_counts_its_later_final() -> None:
    events = [
        final(200, 1200, sent(LINES[0]) - 0.5, "keep your"),
        final(1150, 2100, sent(LINES[0]) + 0.9, "voice down"),
        final(2200, 4300, sent(LINES[1]) + 0.5),
        final(4700, 6400, sent(LINES[2]) + 0.5),
    ]
    score = score_session(LINES, CHUNKS, CHUNK_MS, events)
    assert score.split == 1
    assert score.latencies[0] == pytest.approx(0.9)


def test_a_merged_final_makes_the_earlier_sentence_wait_for_the_later() -> None:
    merged_at = sent(LINES[1]) + 0.5
    events = [final(200, 4300, merged_at), final(4700, 6400, sent(LINES[2]) + 0.5)]
    score = score_session(LINES, CHUNKS, CHUNK_MS, events)
    assert score.lost == 0 and score.merged == 1
    assert score.latencies[0] == pytest.approx(merged_at - sent(LINES[0]))
    assert score.latencies[1] == pytest.approx(0.5)
    assert score.unmerged_latencies == pytest.approx([0.5, 0.5])  # without the one that waited


def test_a_sentence_without_a_final_is_lost_and_a_pre_roll_does_not_save_it() -> None:
    # the third sentence's final reaches 150 ms back into the second: the segmenter's pre-roll, not a final
    events = [final(200, 2100, sent(LINES[0]) + 0.4), final(4050, 6400, sent(LINES[2]) + 0.6)]
    score = score_session(LINES, CHUNKS, CHUNK_MS, events)
    assert score.lost == 1 and score.stray == 0
    assert score.latencies == pytest.approx([0.4, 0.6])


def test_a_final_where_nobody_spoke_is_stray() -> None:
    events = [final(200, 2100, sent(LINES[0]) + 0.4), final(6500, 7800, T0 + 7.9, "thank you")]
    score = score_session(LINES, CHUNKS, CHUNK_MS, events)
    assert score.stray == 1 and score.lost == 2


def test_sentences_never_sent_are_lost() -> None:
    events = [final(200, 2100, sent(LINES[0]) + 0.4), final(2200, 4300, CHUNKS[35] + 0.1)]
    score = score_session(LINES, CHUNKS[:40], CHUNK_MS, events)  # broke off after 4 s
    assert score.lost == 2 and len(score.latencies) == 1


def test_first_partial_runs_from_the_sentence_onset_to_the_segment_it_opened() -> None:
    events: list[tuple[float, dict[str, Any]]] = [
        (T0 + 0.3, {"type": "speech.started", "segment_id": 1, "audio_start_ms": 240}),
        (T0 + 1.0, {"type": "transcript.partial", "segment_id": 1, "text": "keep"}),
        (T0 + 1.5, {"type": "transcript.partial", "segment_id": 1, "text": "keep your"}),
        # a segment opening inside the first sentence (a split) belongs to no new onset
        (T0 + 1.6, {"type": "speech.started", "segment_id": 2, "audio_start_ms": 1300}),
        (T0 + 1.9, {"type": "transcript.partial", "segment_id": 2, "text": "voice"}),
        (T0 + 2.7, {"type": "speech.started", "segment_id": 3, "audio_start_ms": 2210}),
        (T0 + 3.3, {"type": "transcript.partial", "segment_id": 3, "text": "turn"}),
        (T0 + 3.4, {"type": "warning", "code": "lagging"}),
    ]
    score = score_session(LINES, CHUNKS, CHUNK_MS, events)
    assert score.first_partials == pytest.approx([1.0 - 0.5, 3.3 - 2.5])
    assert score.warnings == {"lagging": 1}


def test_scores_add_up_over_sessions() -> None:
    a = score_session(LINES, CHUNKS, CHUNK_MS, [final(200, 2100, sent(LINES[0]) + 0.4)])
    total = Score()
    total.add(a)
    total.add(Score(sessions=1, refused=1, sentences=3))
    summary = total.summary()
    assert (summary["sessions"], summary["refused"], summary["sentences"], summary["lost"]) == (2, 1, 6, 2)
    assert summary["lat_p95"] == 0.4


def test_percentile_is_nearest_rank() -> None:
    xs = [float(k) for k in range(1, 21)]
    assert percentile(xs, 50) == 10.0
    assert percentile(xs, 95) == 19.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 95) is None
