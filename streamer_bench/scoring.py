"""Scoring a streamed corpus item: finals matched to reference sentences by audio time, WER, lost sentences.

A final belongs to the sentence it overlaps most in audio time. A sentence no final overlaps at all is
*lost*; one that only shares a final with a neighbour (two sentences with a short pause between them heard
as one utterance) is *merged*; one that several finals overlap most is *split*; a final that overlaps no
sentence is *stray* (on non-speech every final is stray).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer_bench.corpus import Sentence
from streamer_bench.wer import edits, words


@dataclass
class Tally:
    """Counts summed over sessions and items; WERs are total edits over total reference words."""

    sentences: int = 0
    lost: int = 0
    merged: int = 0
    split: int = 0
    stray: int = 0
    finals: int = 0
    unrecognized: int = 0  # ``unrecognized_speech`` warnings
    errors: list[str] = field(default_factory=list)
    ref_words: int = 0
    edits_ref: int = 0  # streaming finals against the reference text
    offline_words: int = 0
    edits_offline: int = 0  # streaming finals against the offline beam-5 transcripts
    offline_edits_ref: int = 0  # offline beam-5 transcripts against the reference text
    offline_ref_words: int = 0  # reference words of the sentences that have offline transcripts

    def add(self, other: Tally) -> None:
        for name, value in vars(other).items():
            if name == "errors":
                self.errors += value
            else:
                setattr(self, name, getattr(self, name) + value)

    def summary(self) -> dict[str, Any]:
        return {
            "sentences": self.sentences,
            "finals": self.finals,
            "lost": self.lost,
            "merged": self.merged,
            "split": self.split,
            "stray_finals": self.stray,
            "unrecognized_warnings": self.unrecognized,
            "wer": _ratio(self.edits_ref, self.ref_words),
            "offline_wer": _ratio(self.offline_edits_ref, self.offline_ref_words),
            "wer_vs_offline": _ratio(self.edits_offline, self.offline_words),
            "errors": sorted(set(self.errors))[:5],
        }


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def overlap_ms(final: dict[str, Any], sentence: Sentence) -> int:
    return min(int(final["audio_end_ms"]), sentence.end_ms) - max(
        int(final["audio_start_ms"]), sentence.start_ms
    )


def assign(finals: Sequence[dict[str, Any]], sentences: Sequence[Sentence]) -> list[list[dict[str, Any]]]:
    """For every sentence, the finals that overlap it more than any other sentence (in order)."""
    owned: list[list[dict[str, Any]]] = [[] for _ in sentences]
    for final in finals:
        best, best_overlap = None, 0
        for k, sentence in enumerate(sentences):
            ov = overlap_ms(final, sentence)
            if ov > best_overlap:
                best, best_overlap = k, ov
        if best is not None:
            owned[best].append(final)
    return owned


def score(
    events: Sequence[dict[str, Any]], sentences: Sequence[Sentence], offline: Sequence[str] | None = None
) -> Tally:
    """Score one session's events against the item's sentences (and their offline transcripts)."""
    finals = [e for e in events if e.get("type") == "transcript.final" and not e.get("dropped")]
    owned = assign(finals, sentences)
    tally = Tally(sentences=len(sentences), finals=len(finals))
    touched = [any(overlap_ms(f, s) > 0 for f in finals) for s in sentences]
    tally.lost = sum(1 for t in touched if not t)
    tally.merged = sum(1 for o, t in zip(owned, touched, strict=True) if t and not o)
    tally.split = sum(1 for o in owned if len(o) > 1)
    tally.stray = len(finals) - sum(len(o) for o in owned)
    tally.unrecognized = sum(
        1 for e in events if e.get("type") == "warning" and e.get("code") == "unrecognized_speech"
    )
    tally.errors = [str(e.get("code")) for e in events if e.get("type") == "error"]
    # whole-stream WER: a sentence split over two finals or a word moved across a boundary costs nothing
    hypothesis = [w for f in finals for w in words(str(f["text"]))]
    reference = [w for s in sentences for w in words(s.text)]
    tally.ref_words = len(reference)
    tally.edits_ref = edits(reference, hypothesis)
    if offline is not None:
        offline_words = [w for text in offline for w in words(text)]
        tally.offline_words = len(offline_words)
        tally.edits_offline = edits(offline_words, hypothesis)
        tally.offline_edits_ref = edits(reference, offline_words)
        tally.offline_ref_words = len(reference)
    return tally


def content_recall(sentence: Sentence, text: str) -> float:
    """The fraction of the sentence's content words that appear in ``text``."""
    if not sentence.content_words:
        return 1.0
    heard = set(words(text))
    return sum(1 for w in sentence.content_words if w in heard) / len(sentence.content_words)
