"""Scoring a diarized session's finals against a dialogue's turns: speakers, merged turns, mixed finals.

A word of a final belongs to the turn whose span holds its middle (in an overlap, the turn that started
last; outside every turn, the nearest). From that:

- **words right**: words whose ``speaker`` maps to their turn's speaker under the best one-to-one
  mapping of labels (:func:`best_mapping_accuracy`);
- **merged turns**: turns of at least ``min_turn_s`` (1 s) whose words share a final with another
  speaker's words — the target is that every such turn is its own final;
- **mixed finals**: finals holding words of two speakers. A word-timing error puts a turn's first or
  last word in the neighbouring final, so each is also counted leniently: a final is mixed, and a turn
  merged, only when the other speaker has at least two words there.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamer_bench.dialogue import Turn


def best_mapping_accuracy(pairs: list[tuple[int, int]]) -> float:
    """The share of words right under the best one-to-one mapping of predicted labels to speakers."""
    if not pairs:
        return 1.0
    counts = Counter(pairs)
    truths = sorted({t for t, _ in pairs})
    preds = sorted({p for _, p in pairs})
    if len(preds) > 7:  # brute force stays small: keep the labels with the most words
        preds = [p for p, _ in Counter(p for _, p in pairs).most_common(7)]
    best = 0
    for perm in itertools.permutations(preds, min(len(preds), len(truths))):
        best = max(best, sum(counts[t, p] for t, p in zip(truths, perm, strict=False)))
    return best / len(pairs)


@dataclass(frozen=True)
class TurnScore:
    words: int
    right: float  # share of words with the right speaker (best label mapping)
    long_turns: int  # turns of at least min_turn_s
    merged: int  # of those, sharing a final with another speaker's words
    merged_lenient: int  # ... with at least two of them
    finals: int
    mixed: int  # finals holding two speakers' words
    mixed_lenient: int  # ... the second with at least two

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def turn_of(turns: Sequence[Turn], start_ms: float, end_ms: float) -> int:
    """The index of the turn a word (its span on the dialogue's clock) belongs to."""
    mid = (start_ms + end_ms) / 2
    inside = [k for k, t in enumerate(turns) if t.start_ms <= mid <= t.end_ms]
    if inside:
        return max(inside, key=lambda k: turns[k].start_ms)
    return min(range(len(turns)), key=lambda k: min(abs(turns[k].start_ms - mid), abs(turns[k].end_ms - mid)))


def score(turns: Sequence[Turn], finals: Sequence[dict[str, Any]], min_turn_s: float = 1.0) -> TurnScore:
    """Score a session's finals (protocol v1 ``transcript.final`` dicts with words) against ``turns``."""
    pairs: list[tuple[int, int]] = []
    in_final: list[Counter[int]] = []  # per final: words by turn
    for final in finals:
        by_turn: Counter[int] = Counter()
        for w in final.get("words") or []:
            k = turn_of(turns, w["start_ms"], w["end_ms"])
            by_turn[k] += 1
            pairs.append((turns[k].speaker, int(w.get("speaker", -1))))
        if by_turn:
            in_final.append(by_turn)

    def speakers(by_turn: Counter[int]) -> Counter[int]:
        out: Counter[int] = Counter()
        for k, n in by_turn.items():
            out[turns[k].speaker] += n
        return out

    def minority(counts: Counter[int]) -> int:
        return sum(counts.values()) - max(counts.values())

    mixed = [speakers(f) for f in in_final]
    long_turns = [k for k, t in enumerate(turns) if t.end_ms - t.start_ms >= min_turn_s * 1000]

    def merged(k: int, at_least: int) -> bool:
        others = (
            sum(n for j, n in f.items() if turns[j].speaker != turns[k].speaker) for f in in_final if k in f
        )
        return any(n >= at_least for n in others)

    return TurnScore(
        words=len(pairs),
        right=best_mapping_accuracy(pairs),
        long_turns=len(long_turns),
        merged=sum(merged(k, 1) for k in long_turns),
        merged_lenient=sum(merged(k, 2) for k in long_turns),
        finals=len(in_final),
        mixed=sum(len(m) > 1 for m in mixed),
        mixed_lenient=sum(len(m) > 1 and minority(m) >= 2 for m in mixed),
    )
