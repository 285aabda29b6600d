"""Choosing a detection's language, with and without the client's list (no model needed)."""

from __future__ import annotations

import pytest

from streamer.pipeline.asr import pick_language

SCORES = [("<|ja|>", 0.6), ("<|en|>", 0.3), ("<|de|>", 0.1)]


def test_the_likeliest_language_wins_with_its_own_probability() -> None:
    assert pick_language(SCORES, ()) == ("ja", pytest.approx(0.6))


def test_a_list_restricts_the_choice_and_renormalizes_among_it() -> None:
    assert pick_language(SCORES, ("en", "de")) == ("en", pytest.approx(0.75))
    assert pick_language(SCORES, ("de",)) == ("de", pytest.approx(1.0))


def test_a_list_the_model_scored_none_of_is_an_error() -> None:
    with pytest.raises(ValueError, match="none of the languages"):
        pick_language(SCORES, ("fr",))
