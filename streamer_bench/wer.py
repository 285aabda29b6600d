"""Word error rate, as the benchmark and the tests measure transcripts."""

from __future__ import annotations

import re


def words(text: str) -> list[str]:
    """Lower-case words without punctuation ("-" splits words, as Whisper writes compounds either way)."""
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def edits(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance."""
    d = list(range(len(hypothesis) + 1))
    for i in range(1, len(reference) + 1):
        prev, d[0] = d[:], i
        for j in range(1, len(hypothesis) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (reference[i - 1] != hypothesis[j - 1]))
    return d[-1]


def wer(reference: str, hypothesis: str) -> float:
    ref = words(reference)
    return edits(ref, words(hypothesis)) / max(1, len(ref))
