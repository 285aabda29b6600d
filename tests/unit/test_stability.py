"""PartialStabilizer (local agreement) and the loop detector it shares with the hallucination guard."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.pipeline.stability import PartialStabilizer, PartialUpdate, is_looping
from streamer_bench.wer import edits


def feed(*hypotheses: str) -> list[PartialUpdate | None]:
    stabilizer = PartialStabilizer()
    return [stabilizer.update(h) for h in hypotheses]


def test_first_hypothesis_has_no_stable_words() -> None:
    assert feed("the children are") == [PartialUpdate(text="the children are", stable_text="")]


def test_agreement_of_two_hypotheses_makes_a_stable_prefix() -> None:
    _, second, third = feed("the children are", "the children are playing", "the children were playing")
    assert second == PartialUpdate(text="the children are playing", stable_text="the children are")
    # the third disagrees after "children": stable words are kept, shown before the new tail
    assert third is not None and third.stable_text == "the children are"
    assert third.text.startswith("the children are")


def test_stable_prefix_grows_only_with_agreement() -> None:
    s = PartialStabilizer()
    assert s.update("we are going")
    up = s.update("we are going to")
    assert up is not None and up.stable_text == "we are going"
    up = s.update("we are going to visit")
    assert up is not None and up.stable_text == "we are going to"
    up = s.update("we are going to visit hour")
    assert up is not None and up.stable_text == "we are going to visit"
    up = s.update("we are going to visit our friends")  # disagrees at "hour": no growth
    assert up is not None and up.stable_text == "we are going to visit"
    assert up.text == "we are going to visit our friends"
    up = s.update("we are going to visit our friends today")
    assert up is not None and up.stable_text == "we are going to visit our friends"


def test_agreement_ignores_case_and_punctuation() -> None:
    *_, last = feed("Hello world", "hello, World.")
    assert last is not None and last.stable_text.lower().startswith("hello")
    assert len(last.stable_text.split()) == 2


def test_stable_words_are_never_retracted_when_the_model_changes_its_mind() -> None:
    """A later agreement on a *different* beginning must not replace words already shown as stable."""
    s = PartialStabilizer()
    s.update("a b c")
    first = s.update("a b d")
    assert first is not None and first.stable_text == "a b"
    shown = [first.stable_text]
    for hypothesis in ("x y z", "x y z w"):
        update = s.update(hypothesis)
        assert update is not None
        shown.append(update.stable_text)
    for before, after in pairwise(shown):
        assert after.startswith(before), f"stable text retracted: {before!r} -> {after!r}"


def test_stable_words_keep_the_form_they_were_shown_in() -> None:
    """Growing the stable prefix must not rewrite the words already stable (here: drop their period)."""
    s = PartialStabilizer()
    s.update("I walk to the park.")
    before = s.update("I walk to the park. Near")
    assert before is not None and before.stable_text == "I walk to the park."
    after = s.update("I walk to the park near my house")
    assert after is not None
    assert after.stable_text.startswith(before.stable_text), (before.stable_text, after.stable_text)


def test_a_wrong_stable_word_does_not_hide_the_rest_of_the_hypothesis() -> None:
    """``text`` is the whole current hypothesis (protocol v1), even when an early stable word was wrong.

    Whisper hears a segment's first word from under a second of audio and may get it wrong ("and" for
    "Every"), and stable words are never retracted. ``_after_overlap`` then aligns the new hypothesis on
    the *last* occurrence of the last stable word anywhere in it, so everything before the hypothesis'
    last "and" disappears: seen on en_long.wav as "and we" for "Every morning I walk ... my dog and we".
    """
    s = PartialStabilizer()
    s.update("and")
    assert s.update("and rewarding I walked to") == PartialUpdate("and rewarding I walked to", "and")
    heard = "every morning I walk to the park near my house with my dog and we"
    hypothesis = heard.split()
    update = s.update(heard)
    assert update is not None and update.stable_text == "and"
    # the stable word may stand in for the hypothesis' first word; nothing else may be lost
    assert edits(hypothesis, update.text.split()) <= 1, update.text


def test_a_hypothesis_that_shifts_is_aligned_on_the_stable_words() -> None:
    s = PartialStabilizer()
    s.update("the park near")
    s.update("the park near my")
    up = s.update("in the park near my house")  # a word appeared in front: no repetition in the text
    assert up is not None and up.stable_text == "the park near"
    assert up.text == "the park near my house"


def test_looping_hypothesis_is_hidden_and_resets_agreement() -> None:
    s = PartialStabilizer()
    s.update("the the")
    assert s.update("the the the the") is None
    assert s.resets == 1
    # the loop did not count as agreement: the next hypothesis starts afresh (nothing stable yet)
    up = s.update("the park is")
    assert up == PartialUpdate(text="the park is", stable_text="")


def test_a_loop_does_not_retract_what_was_stable() -> None:
    s = PartialStabilizer()
    s.update("one two three")
    s.update("one two three four")
    assert s.update("one two two two two") is None
    up = s.update("one two three four five")
    assert up is not None and up.stable_text == "one two three"


def test_empty_hypothesis_is_not_shown() -> None:
    s = PartialStabilizer()
    assert s.update("") is None and s.update("   ") is None and s.resets == 0


@pytest.mark.parametrize(
    ("words", "looping"),
    [
        ("", False),
        ("the", False),
        ("the the", False),  # twice is speech ("that that")
        ("the the the", True),
        ("The, the. THE", True),  # case and punctuation do not hide a loop
        ("a b a b a b", True),  # a 2-gram three times
        ("a b c d a b c d a b c d", True),  # the longest n-gram checked
        ("a b c d e a b c d e a b c d e", False),  # 5-grams are not checked
        ("a b a b", False),
        ("go go stop go go", False),
        ("we went there and then we went there", False),
        ("x y the the the", True),  # anywhere in the text
    ],
)
def test_is_looping(words: str, looping: bool) -> None:
    assert is_looping(words.split()) is looping


def test_is_looping_knobs() -> None:
    assert is_looping(["a", "a"], max_repeats=2)
    assert not is_looping(["a", "b", "a", "b", "a", "b"], max_ngram=1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "d", "A", "b,"]), max_size=8), max_size=12))
def test_stable_words_only_ever_grow(hypotheses: list[list[str]]) -> None:
    """Stable words, compared as the stabilizer compares them, never shrink or change."""
    s = PartialStabilizer()
    previous: list[str] = []
    for words in hypotheses:
        update = s.update(" ".join(words))
        if update is None:
            continue
        stable = [w.lower().strip(",") for w in update.stable_text.split()]
        assert stable[: len(previous)] == previous, (previous, stable)
        previous = stable
        assert update.text.split()[: len(stable)] == update.stable_text.split()
