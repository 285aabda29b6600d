"""The committed multi-voice fixtures (``python -m streamer_bench.dialogue --fixtures``) and their truth."""

from __future__ import annotations

import itertools

import numpy as np
from support import FIXTURES

from streamer_bench import dialogue

SPEECH = dialogue.load(FIXTURES / "dialogue")


def test_the_fixtures_are_what_fixture_params_make() -> None:
    assert SPEECH.key == dialogue.fixture_params().key()
    assert [it.id for it in SPEECH.items] == ["two0_joe_alpha", "three1_alpha_joe_kumo"]


def test_speakers_are_numbered_by_first_appearance() -> None:
    for item in SPEECH.items:
        firsts = [t.speaker for t in item.turns]
        seen = list(dict.fromkeys(firsts))
        assert seen == list(range(len(item.voices)))
        assert all(item.voices[t.speaker] == t.voice for t in item.turns)


def test_turns_follow_quickly_and_some_overlap() -> None:
    gaps = [b.start_ms - a.end_ms for item in SPEECH.items for a, b in itertools.pairwise(item.turns)]
    overlaps = [g for g in gaps if g < 0]
    assert overlaps and all(g >= -400 for g in overlaps)
    assert all(200 <= g <= 600 for g in gaps if g >= 0)


def test_words_tile_their_turn_and_the_audio_holds_the_voices() -> None:
    for item in SPEECH.items:
        audio = SPEECH.audio(item)
        assert audio.size * 1000 // dialogue.RATE == item.duration_ms
        for turn in item.turns:
            assert turn.words[0].start_ms == turn.start_ms and abs(turn.words[-1].end_ms - turn.end_ms) <= 1
            assert [w.text for w in turn.words] == [t.strip(".,!?;:\"'").lower() for t in turn.text.split()]
            voiced = audio[turn.start_ms * 16 : turn.end_ms * 16]
            assert float(np.sqrt(np.mean(voiced**2))) > 0.01  # speech at about -20 dBFS, not silence
