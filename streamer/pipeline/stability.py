"""Partial-hypothesis stability: a prefix only becomes stable once two consecutive hypotheses agree.

This is the "local agreement" policy of streaming Whisper systems: the words two successive decodes of
the growing utterance share are unlikely to change, so they are shown as stable and never retracted
within the segment. A hypothesis caught in a loop ("the the the ...") is not allowed to confirm anything:
it resets the agreement instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[\w']+")


def _key(word: str) -> str:
    return "".join(_WORD.findall(word.lower()))


def is_looping(words: list[str], max_repeats: int = 3, max_ngram: int = 4) -> bool:
    """True if some n-gram (n <= max_ngram) repeats back to back ``max_repeats`` times or more."""
    keys = [_key(w) for w in words]
    for n in range(1, max_ngram + 1):
        for start in range(0, len(keys) - n * max_repeats + 1):
            gram = keys[start : start + n]
            if all(keys[start + k * n : start + (k + 1) * n] == gram for k in range(1, max_repeats)):
                return True
    return False


@dataclass(frozen=True)
class PartialUpdate:
    text: str
    stable_text: str


class PartialStabilizer:
    """Tracks one segment's hypotheses and yields what to show: the text and its stable prefix."""

    def __init__(self) -> None:
        self._previous: list[str] = []
        self._stable: list[str] = []
        self.resets = 0

    def update(self, hypothesis: str) -> PartialUpdate | None:
        """Fold in a new hypothesis; None means it should not be shown (empty or looping)."""
        words = hypothesis.split()
        if not words:
            return None
        if is_looping(words):
            self._previous = []
            self.resets += 1
            return None
        stable = self._stable
        if _prefix_matches(stable, words) and _prefix_matches(stable, self._previous):
            agreed = len(stable)
            for a, b in zip(self._previous[agreed:], words[agreed:], strict=False):
                if _key(a) != _key(b):
                    break
                agreed += 1
            # extend, never rewrite: confirmed words keep the form they were first shown in
            self._stable = stable + words[len(stable) : agreed]
        self._previous = words
        if _prefix_matches(self._stable, words):
            tail = words[len(self._stable) :]
        else:
            tail = _after_overlap(self._stable, words)
        stable_text = " ".join(self._stable)
        text = " ".join([*self._stable, *tail])
        return PartialUpdate(text=text, stable_text=stable_text)


def _prefix_matches(prefix: list[str], words: list[str]) -> bool:
    return len(words) >= len(prefix) and all(_key(a) == _key(b) for a, b in zip(prefix, words, strict=False))


def _after_overlap(stable: list[str], words: list[str], reach: int = 3) -> list[str]:
    """The words of a diverging hypothesis after the stable prefix: the last stable word is looked for
    near where it stands in the stable text (a word further away is a different occurrence)."""
    if not stable:
        return words
    last, at = _key(stable[-1]), len(stable) - 1
    candidates = [
        i for i in range(max(0, at - reach), min(len(words), at + reach + 1)) if _key(words[i]) == last
    ]
    if candidates:
        nearest = min(candidates, key=lambda i: abs(i - at))
        return words[nearest + 1 :]
    return words[len(stable) :]
