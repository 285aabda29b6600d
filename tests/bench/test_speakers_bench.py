"""The speaker bench's scoring and its VAD-like cutting, on made-up turns."""

from __future__ import annotations

import numpy as np
import pytest

from streamer_bench import dialogue
from streamer_bench.speaker_turns import best_mapping_accuracy
from streamer_bench.speakers_bench import segment


def test_the_best_label_permutation_is_scored() -> None:
    assert best_mapping_accuracy([(0, 1), (0, 1), (1, 0)]) == 1.0
    assert best_mapping_accuracy([(0, 0), (0, 1), (1, 1), (1, 1)]) == pytest.approx(0.75)
    # a spare label maps to nobody: its words are wrong
    assert best_mapping_accuracy([(0, 0), (0, 2), (1, 1), (1, 1)]) == pytest.approx(0.75)


def turn(speaker: int, start_ms: int, end_ms: int) -> dialogue.Turn:
    return dialogue.Turn(speaker, "v", "a b", start_ms, end_ms, [dialogue.Word("a", start_ms, end_ms)])


def test_quick_turns_and_overlaps_merge_into_one_utterance_like_a_vad() -> None:
    item = dialogue.Item(
        "x",
        "two",
        "x.wav",
        9000,
        ["a", "b"],
        [turn(0, 500, 2000), turn(1, 2300, 3000), turn(0, 2900, 4000), turn(1, 5500, 7000)],
    )
    utterances = segment(item, 0.45, np.random.default_rng(0))
    assert [[s for s, _ in u.words] for u in utterances] == [[0, 1, 0], [1]]
