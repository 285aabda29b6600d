"""Scoring a diarized session's finals against turns, and the held-out set being apart from the tuning one."""

from __future__ import annotations

from typing import Any

from streamer_bench import dialogue, dialogue_heldout_text, dialogue_text
from streamer_bench.speaker_turns import score, turn_of


def turn(speaker: int, start_ms: int, end_ms: int) -> dialogue.Turn:
    return dialogue.Turn(speaker, "v", "x", start_ms, end_ms, [])


TURNS = [turn(0, 0, 2000), turn(1, 2300, 2700), turn(0, 2600, 5000), turn(1, 5400, 7000)]


def words(*spans: tuple[int, int, int]) -> dict[str, Any]:
    return {"words": [{"start_ms": a, "end_ms": b, "speaker": s} for a, b, s in spans]}


def test_a_word_belongs_to_the_turn_holding_its_middle_the_later_in_an_overlap() -> None:
    assert turn_of(TURNS, 100, 300) == 0
    assert turn_of(TURNS, 2600, 2700) == 2  # inside turns 1 and 2: the later one
    assert turn_of(TURNS, 5100, 5200) == 2  # in no turn: the nearest edge


def test_turns_split_right_are_not_merged_and_no_final_is_mixed() -> None:
    finals = [
        words((0, 900, 5), (1000, 1900, 5)),
        words((2300, 2550, 2)),
        words((2750, 3500, 5), (3600, 4900, 5)),
        words((5400, 6000, 2), (6100, 6900, 2)),
    ]
    s = score(TURNS, finals)
    assert (s.words, s.right, s.long_turns, s.merged, s.finals, s.mixed) == (7, 1.0, 3, 0, 4, 0)


def test_a_quick_reply_inside_a_final_merges_its_neighbours_and_mixes_the_final() -> None:
    finals = [
        words((0, 900, 0), (1000, 1900, 0), (2300, 2550, 0), (2750, 3500, 0), (3600, 4900, 0)),
        words((5400, 6000, 1), (6100, 6900, 1)),
    ]
    s = score(TURNS, finals)
    # turns 0 and 2 (2 s and 2.4 s) share the first final with the 0.4 s reply; the reply is under 1 s
    assert (s.long_turns, s.merged, s.mixed) == (3, 2, 1)
    # one word of the other voice: lenient counts forgive it as a word-timing error
    assert (s.merged_lenient, s.mixed_lenient) == (0, 0)
    assert s.right == 6 / 7


def test_the_heldout_set_shares_no_script_seed_or_pairing_with_the_tuning_set() -> None:
    tuning, held = dialogue.DialogueParams(), dialogue.heldout_params()
    assert held.key() != tuning.key() and held.seed != tuning.seed
    lines = {
        text for script in dialogue_text.TWO_SPEAKERS + dialogue_text.THREE_SPEAKERS for _, text in script
    }
    held_lines = [
        text
        for script in dialogue_heldout_text.TWO_SPEAKERS + dialogue_heldout_text.THREE_SPEAKERS
        for _, text in script
    ]
    assert not lines & set(held_lines)
    assert not set(held.pairs) & set(tuning.pairs)
    assert tuning.trio not in held.trios
    assert set(dialogue.VOICES) - {v for cast in (*tuning.pairs, tuning.trio) for v in cast}  # unheard voices


def test_the_further_heldout_trios_are_new_casts_of_heldout_scripts_with_a_seed_of_their_own() -> None:
    tuning, held, trios = dialogue.DialogueParams(), dialogue.heldout_params(), dialogue.heldout_trio_params()
    assert len({tuning.key(), held.key(), trios.key()}) == 3
    assert len({tuning.seed, held.seed, trios.seed}) == 3
    assert trios.script == "heldout" and not trios.pairs and not trios.two_speakers
    assert len(trios.trios) == len(trios.three_speakers) == 4
    assert set(trios.three_speakers) <= set(range(len(dialogue_heldout_text.THREE_SPEAKERS)))
    assert tuning.trio not in trios.trios and not set(trios.trios) & set(held.trios)
    assert all(len(set(cast)) == 3 and set(cast) <= set(dialogue.VOICES) for cast in trios.trios)
    assert dialogue.SETS["heldout-trios"]().key() == trios.key()
