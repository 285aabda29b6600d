"""Scoring one bench session from what it sent and what it received: latencies, lost and split sentences.

A sentence's **final latency** runs from the wall time the chunk holding its last sample was sent to the
arrival of the last final that overlaps it in audio time: a sentence split over two finals waits for the
later one (and counts as split), one merged with the next sentence waits for the merged final (and counts
as merged; ``lat_p95_unmerged`` leaves those out, to tell segmentation from load apart). A sentence
no final overlaps is **lost**. A final "overlaps" a sentence by at least :data:`MIN_OVERLAP_MS` (or half
the sentence, if shorter): the segmenter's pre-roll and tail reach a little into the neighbours.

**Final-end latency** (the measure for continuous speech, where a final ends wherever the segmenter cut,
not at a sentence's end): for every final, from the wall time the chunk holding its last audio sample
(``audio_end_ms``) was sent to the final's arrival. It is what a listener of a continuous reading waits
for each piece of text, whatever sentence it belongs to.

**First partial latency**: from the send of the chunk holding a sentence's first sample to the first
``transcript.partial`` of the segment that opened on it (the segment whose ``speech.started`` lies nearest
the sentence's start, no more than :data:`SEGMENT_SLACK_MS` before it). A sentence that continues an
open segment has none.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer_bench.script import Line
from streamer_bench.wer import edits, words

MIN_OVERLAP_MS = 200.0
SEGMENT_SLACK_MS = 500.0

Events = Sequence[tuple[float, dict[str, Any]]]  # (monotonic arrival time, server event)


@dataclass
class Score:
    """Counts and samples of one or more sessions (``add`` sums them)."""

    sessions: int = 0
    refused: int = 0  # sessions the server did not admit
    failed: int = 0  # sessions that broke off (connection lost, no session.closed in time)
    sentences: int = 0
    finals: int = 0
    lost: int = 0
    split: int = 0
    merged: int = 0
    stray: int = 0  # finals that overlap no sentence: words where nobody spoke
    latencies: list[float] = field(default_factory=list)
    unmerged_latencies: list[float] = field(default_factory=list)  # sentences whose final ends with them
    end_latencies: list[float] = field(default_factory=list)  # per final: its last audio sent -> arrival
    first_partials: list[float] = field(default_factory=list)
    edits: int = 0
    ref_words: int = 0
    warnings: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    start_times: list[float] = field(default_factory=list)  # when each session's first chunk went

    def add(self, other: Score) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies
        return {
            "sessions": self.sessions,
            "refused": self.refused,
            "failed": self.failed,
            "sentences": self.sentences,
            "finals": self.finals,
            "lost": self.lost,
            "split_sentences": self.split,
            "merged_sentences": self.merged,
            "stray_finals": self.stray,
            "lat_p50": percentile(lat, 50),
            "lat_p95": percentile(lat, 95),
            "lat_max": round(max(lat), 3) if lat else None,
            "lat_p95_unmerged": percentile(self.unmerged_latencies, 95),
            "end_lat_p50": percentile(self.end_latencies, 50),
            "end_lat_p95": percentile(self.end_latencies, 95),
            "first_partial_p50": percentile(self.first_partials, 50),
            "wer": round(self.edits / self.ref_words, 4) if self.ref_words else None,
            "warnings": dict(sorted(self.warnings.items())),
            "errors": dict(sorted(self.errors.items())),
            "start_spread_s": round(max(self.start_times) - min(self.start_times), 3)
            if self.start_times
            else None,
        }


def percentile(xs: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile (the value at rank ceil(p% of n)), rounded to ms; None when empty."""
    if not xs:
        return None
    ordered = sorted(xs)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def chunk_span(line: Line, chunk_ms: float) -> tuple[int, int]:
    """The indices of the chunks holding a line's first and last samples."""
    return int(line.start_ms // chunk_ms), max(0, math.ceil(line.end_ms / chunk_ms) - 1)


def overlap_ms(final: dict[str, Any], line: Line) -> float:
    return min(float(final["audio_end_ms"]), line.end_ms) - max(float(final["audio_start_ms"]), line.start_ms)


def overlaps(final: dict[str, Any], line: Line) -> bool:
    return overlap_ms(final, line) >= min(MIN_OVERLAP_MS, (line.end_ms - line.start_ms) / 2)


def score_session(
    lines: Sequence[Line], chunk_times: Sequence[float], chunk_ms: float, events: Events
) -> Score:
    """Score a session that sent ``chunk_times[k]`` = when chunk ``k`` went, and received ``events``.

    Lines whose last chunk was never sent (the session broke off) are lost and have no latency.
    """
    finals = [(t, e) for t, e in events if e.get("type") == "transcript.final" and not e.get("dropped")]
    score = Score(sessions=1, sentences=len(lines), finals=len(finals))
    if chunk_times:
        score.start_times.append(chunk_times[0])
    for k, line in enumerate(lines):
        _, last = chunk_span(line, chunk_ms)
        mine = [(t, e) for t, e in finals if overlaps(e, line)]
        if not mine or last >= len(chunk_times):
            score.lost += 1
            continue
        if len(mine) > 1:
            score.split += 1
        arrival, latest = max(mine, key=lambda te: te[0])
        latency = arrival - chunk_times[last]
        score.latencies.append(latency)
        if any(overlaps(latest, later) for later in lines[k + 1 :]):
            score.merged += 1  # the final also holds a later sentence: this one waited for it
        else:
            score.unmerged_latencies.append(latency)
    score.end_latencies = end_latencies(finals, chunk_times, chunk_ms)
    score.stray = sum(1 for _, e in finals if not any(overlaps(e, line) for line in lines))
    score.first_partials = _first_partials(lines, chunk_times, chunk_ms, events)
    reference = [w for line in lines for w in words(line.text)]
    hypothesis = [w for _, e in finals for w in words(str(e.get("text", "")))]
    score.ref_words, score.edits = len(reference), edits(reference, hypothesis)
    for _, e in events:
        if e.get("type") == "warning":
            score.warnings[str(e.get("code"))] += 1
        elif e.get("type") == "error":
            score.errors[str(e.get("code"))] += 1
    return score


def end_latencies(finals: Events, chunk_times: Sequence[float], chunk_ms: float) -> list[float]:
    """Per final: its arrival minus when the chunk holding its last audio sample was sent."""
    out = []
    for arrival, e in finals:
        last = max(0, math.ceil(float(e["audio_end_ms"]) / chunk_ms) - 1)
        if last < len(chunk_times):
            out.append(arrival - chunk_times[last])
    return out


def _first_partials(
    lines: Sequence[Line], chunk_times: Sequence[float], chunk_ms: float, events: Events
) -> list[float]:
    opened: dict[int, float] = {}  # segment id -> audio start (ms)
    first_partial: dict[int, float] = {}  # segment id -> arrival of its first partial
    for t, e in events:
        if e.get("type") == "speech.started":
            opened.setdefault(int(e["segment_id"]), float(e["audio_start_ms"]))
        elif e.get("type") == "transcript.partial":
            first_partial.setdefault(int(e["segment_id"]), t)
    owner: dict[int, int] = {}  # line index -> the earliest segment that opened on it
    for segment, start in sorted(opened.items(), key=lambda kv: kv[1]):
        near = [k for k, line in enumerate(lines) if line.start_ms - SEGMENT_SLACK_MS <= start < line.end_ms]
        if near:
            k = min(near, key=lambda k: abs(lines[k].start_ms - start))
            owner.setdefault(k, segment)
    out = []
    for k, segment in sorted(owner.items()):
        first, _ = chunk_span(lines[k], chunk_ms)
        if segment in first_partial and first < len(chunk_times):
            out.append(first_partial[segment] - chunk_times[first])
    return out
