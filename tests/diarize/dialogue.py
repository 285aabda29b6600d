"""The committed two-voice dialogue (tests/fixtures/dialogue): its audio, its turns, and how well a set of
labelled words matches them under the best mapping of labels to speakers."""

from __future__ import annotations

import itertools
import json
import wave
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from support import FIXTURES

DIALOGUE = FIXTURES / "dialogue"


@dataclass(frozen=True)
class Turn:
    speaker: int
    start_ms: int
    end_ms: int
    text: str


@dataclass(frozen=True)
class Dialogue:
    samples: np.ndarray  # 16 kHz int16
    turns: list[Turn]

    def speaker_at(self, ms: float) -> int:
        """Who speaks at ``ms`` (the nearest turn when between turns; the later one where two overlap)."""
        inside = [t for t in self.turns if t.start_ms <= ms <= t.end_ms]
        if inside:
            return inside[-1].speaker
        return min(self.turns, key=lambda t: min(abs(t.start_ms - ms), abs(t.end_ms - ms))).speaker


def two_voices(until_ms: int) -> Dialogue:
    """The first ``until_ms`` of the joe/alpha dialogue and the turns that end inside it."""
    manifest: dict[str, Any] = json.loads((DIALOGUE / "manifest.json").read_text())
    item = next(i for i in manifest["items"] if i["id"] == "two0_joe_alpha")
    with wave.open(str(DIALOGUE / item["file"]), "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        samples = np.frombuffer(w.readframes(until_ms * 16), dtype="<i2")
    turns = [
        Turn(t["speaker"], t["start_ms"], t["end_ms"], t["text"])
        for t in item["turns"]
        if t["end_ms"] <= until_ms
    ]
    return Dialogue(samples, turns)


def best_mapping_share(pairs: list[tuple[int, int]]) -> float:
    """The share of (true, predicted) pairs right under the best one-to-one mapping of labels."""
    if not pairs:
        return 0.0
    counts = Counter(pairs)
    truths = sorted({t for t, _ in pairs})
    preds = sorted({p for _, p in pairs})
    best = 0
    for perm in itertools.permutations(preds, min(len(preds), len(truths))):
        best = max(best, sum(counts[t, p] for t, p in zip(truths, perm, strict=False)))
    return best / len(pairs)
