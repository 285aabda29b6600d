"""Speaker labels: online clustering and change points, on the committed multi-voice dialogues.

``tests/fixtures/dialogue`` is ``python -m streamer_bench.dialogue --fixtures``: a two-voice dialogue
(piper's joe, Kokoro's jf_alpha) and a three-voice one (with Kokoro's jm_kumo), with ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import FIXTURES

from streamer.pipeline.speakers import (
    SpeakerClusters,
    WordSpan,
    find_changes,
    pick_change,
    plan_changes,
)
from streamer.pipeline.speakers_encoder import RATE, Encoder
from streamer.pipeline.speakers_weights import load_encoder_weights
from streamer.session.diarize import ends_sentence
from streamer_bench import dialogue

SPEECH = dialogue.load(FIXTURES / "dialogue")


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(load_encoder_weights())


def turn_audio(item: dialogue.Item, turn: dialogue.Turn) -> np.ndarray:
    audio = SPEECH.audio(item)
    return audio[turn.start_ms * RATE // 1000 : turn.end_ms * RATE // 1000]


def unit(v: list[float]) -> np.ndarray:
    x = np.zeros(256, np.float32)
    x[: len(v)] = v
    return x / np.linalg.norm(x)


def test_labels_come_in_order_of_first_appearance_and_stay() -> None:
    clusters = SpeakerClusters(threshold=0.8, min_new_s=0.0)
    a, b, c = unit([1, 0, 0]), unit([0, 1, 0]), unit([0, 0, 1])
    assert [clusters.assign(v) for v in (b, b, a, c, a, b)] == [0, 0, 1, 2, 1, 0]
    assert clusters.count == 3


def test_the_cap_sends_new_voices_to_the_nearest_speaker() -> None:
    clusters = SpeakerClusters(threshold=0.9, max_speakers=2, min_new_s=0.0)
    assert clusters.assign(unit([1, 0, 0])) == 0
    assert clusters.assign(unit([0, 1, 0])) == 1
    assert clusters.assign(unit([0.2, 1, 1])) == 1  # a third voice, but the cap is two
    assert clusters.count == 2


def test_a_short_stretch_does_not_found_a_speaker() -> None:
    clusters = SpeakerClusters(threshold=0.9, min_new_s=1.0)
    assert clusters.assign(unit([1, 0, 0]), weight=2.0) == 0
    assert clusters.assign(unit([0, 1, 0]), weight=0.5) == 0
    assert clusters.assign(unit([0, 1, 0]), weight=1.5) == 1


def test_bad_embeddings_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="embedding"):
        SpeakerClusters().assign(np.full(256, np.nan, np.float32))
    with pytest.raises(ValueError, match="embedding"):
        SpeakerClusters().assign(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="max_speakers"):
        SpeakerClusters(max_speakers=0)


@pytest.mark.parametrize("item_id", ["two0_joe_alpha", "three1_alpha_joe_kumo"])
def test_real_turns_get_their_speakers(encoder: Encoder, item_id: str) -> None:
    item = SPEECH.item(item_id)
    clusters = SpeakerClusters()
    labels = [
        clusters.assign(encoder.embed_utterance(turn_audio(item, t)), weight=(t.end_ms - t.start_ms) / 1000)
        for t in item.turns
    ]
    truth = [t.speaker for t in item.turns]
    assert clusters.count == len(item.voices), (labels, [t.speaker for t in item.turns])
    # turns are numbered by first appearance too, so the right labels are the true speakers themselves
    right = sum(p == t for p, t in zip(labels, truth, strict=True))
    assert right >= len(truth) - 1, (labels, truth)


def test_same_voice_is_closer_than_another_voice(encoder: Encoder) -> None:
    item = SPEECH.item("two0_joe_alpha")
    joe = [encoder.embed_utterance(turn_audio(item, t)) for t in item.turns if t.voice == "joe"][:2]
    alpha = encoder.embed_utterance(turn_audio(item, next(t for t in item.turns if t.voice == "alpha")))
    assert float(joe[0] @ joe[1]) > float(joe[0] @ alpha) + 0.2


def two_voices(
    item: dialogue.Item, first: dialogue.Turn, second: dialogue.Turn
) -> tuple[np.ndarray, list[WordSpan], int]:
    """Two turns back to back (0.25 s apart), their words, and the index of the second's first word."""
    a, b = turn_audio(item, first), turn_audio(item, second)
    gap = np.zeros(RATE // 4, np.float32)
    words = [
        WordSpan((w.start_ms - first.start_ms) / 1000, (w.end_ms - first.start_ms) / 1000)
        for w in first.words
    ]
    offset = (a.size + gap.size) / RATE
    words += [
        WordSpan(offset + (w.start_ms - second.start_ms) / 1000, offset + (w.end_ms - second.start_ms) / 1000)
        for w in second.words
    ]
    return np.concatenate([a, gap, b]), words, len(first.words)


def test_the_change_point_is_found_where_the_voice_changes(encoder: Encoder) -> None:
    item = SPEECH.item("two0_joe_alpha")
    long_joe = item.turns[6]  # "And keep it under ten slides, ..."
    reply = item.turns[7]  # alpha: "Okay, that makes sense. ..."
    audio, words, change = two_voices(item, long_joe, reply)
    assert find_changes(encoder.embed_windows, audio, words) == [change]


def test_a_quick_reply_before_a_long_turn_is_split_off(encoder: Encoder) -> None:
    item = SPEECH.item("two0_joe_alpha")
    audio, words, change = two_voices(item, item.turns[3], item.turns[4])  # "Oh, right, I see them now."
    assert find_changes(encoder.embed_windows, audio, words) == [change]


def test_one_voice_is_not_split(encoder: Encoder) -> None:
    item = SPEECH.item("two0_joe_alpha")
    audio, words, _ = two_voices(item, item.turns[4], item.turns[6])  # joe twice
    plan = plan_changes(audio, words)
    assert plan.boundaries  # the pause between the turns is tested, and is no change
    assert find_changes(encoder.embed_windows, audio, words) == []


def test_a_sentence_end_is_a_candidate_even_where_the_word_timings_leave_no_pause() -> None:
    # Whisper's timings often run one turn's last word into the next's first; the full stop remains
    audio = np.zeros(RATE * 4, np.float32)
    words = [WordSpan(0.1, 0.8), WordSpan(0.8, 1.6), WordSpan(1.6, 2.4), WordSpan(2.4, 3.2)]
    assert plan_changes(audio, words).boundaries == []
    ended = [words[0], WordSpan(0.8, 1.6, sentence_end=True), *words[2:]]
    assert plan_changes(audio, ended).boundaries == [2]


def test_a_sentence_end_in_a_final_s_words_marks_its_span() -> None:
    assert [ends_sentence(w) for w in ("helps.", "now?", 'it!"', "course,", "Mr", " end. ")] == [
        True,
        True,
        True,
        False,
        False,
        True,
    ]


def test_pick_change_checks_the_embeddings_it_is_given() -> None:
    plan = plan_changes(np.zeros(RATE * 3, np.float32), [WordSpan(0.1, 1.0), WordSpan(1.5, 2.5)])
    assert plan.boundaries == [1] and plan.windows.shape == (2, 160, 40)
    with pytest.raises(ValueError, match="expected 2 embeddings"):
        pick_change(plan.boundaries, np.zeros((3, 256), np.float32))
    assert pick_change(plan.boundaries, np.stack([unit([1, 0]), unit([0, 1])])) == 1
    assert pick_change(plan.boundaries, np.stack([unit([1, 0]), unit([1, 0.1])])) is None


def test_word_timings_that_start_before_the_audio_still_find_the_change(encoder: Encoder) -> None:
    # a VAD edge a little after the first word's ASR start gives it a negative time; slicing audio from
    # a negative index took the utterance's last few samples instead, and no change was ever found
    item = SPEECH.item("two0_joe_alpha")
    audio, words, change = two_voices(item, item.turns[6], item.turns[7])
    early = [WordSpan(words[0].start_s - 0.06, words[0].end_s), *words[1:]]
    assert find_changes(encoder.embed_windows, audio, early) == [change]
