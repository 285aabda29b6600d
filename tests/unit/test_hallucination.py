"""The hallucination guard: which model outputs may become finals."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.pipeline.asr import AsrResult
from streamer.pipeline.hallucination import normalise, rejection_reason, rms

RATE = 16000
# 3 s: long enough to say the test sentences (more words than the audio can hold is itself rejected)
LOUD = (0.2 * np.sin(2 * np.pi * 220 * np.arange(3 * RATE) / RATE)).astype(np.float32)  # rms ~0.14
QUIET = np.full(RATE, 0.002, dtype=np.float32)


def result(text: str, **scores: float) -> AsrResult:
    """A confident result unless scores say otherwise."""
    values = {"avg_logprob": -0.2, "no_speech_prob": 0.01, "compression_ratio": 1.2, **scores}
    return AsrResult(text=text, language="en", **values)


def test_rms() -> None:
    assert rms(np.zeros(0, dtype=np.float32)) == 0.0
    assert rms(LOUD) == pytest.approx(0.2 / np.sqrt(2), rel=1e-3)
    assert rms(QUIET) < 0.01 < rms(LOUD)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Thank you!!", "thank you"), ("  I'm SORRY.  ", "i'm sorry"), ("...", ""), ("-- ? --", "")],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_believable_speech_passes() -> None:
    assert rejection_reason(result("The children are playing football in the park."), LOUD) is None


@pytest.mark.parametrize("text", ["", "   ", "...", " - ", "♪"])
def test_empty_text(text: str) -> None:
    assert rejection_reason(result(text), LOUD) == "empty"


def test_no_speech_needs_both_the_no_speech_score_and_low_confidence() -> None:
    assert rejection_reason(result("the park", no_speech_prob=0.9, avg_logprob=-1.2), LOUD) == "no_speech"
    # a confident decode of real words wins over the no-speech score
    assert rejection_reason(result("the park", no_speech_prob=0.9, avg_logprob=-0.3), LOUD) is None
    # low confidence alone (down to the floor) is not enough either
    assert rejection_reason(result("the park", no_speech_prob=0.2, avg_logprob=-1.2), LOUD) is None


def test_very_low_confidence() -> None:
    assert rejection_reason(result("the park", avg_logprob=-2.0), LOUD) == "low_confidence"


@pytest.mark.parametrize(
    "text", ["we we we we went", "go to the go to the go to the", "the park the park the park"]
)
def test_looping_text_is_repetition(text: str) -> None:
    assert rejection_reason(result(text), LOUD) == "repetition"


def test_high_compression_ratio_is_repetition() -> None:
    assert rejection_reason(result("the park", compression_ratio=3.0), LOUD) == "repetition"


@pytest.mark.parametrize("text", ["Thank you.", "Thanks for watching!", "you", "Bye bye.", "I'm sorry."])
@pytest.mark.parametrize(
    "doubt",
    [{"no_speech_prob": 0.3}, {"avg_logprob": -0.8}, {}],  # {} = confident, but the audio is near silent
    ids=["no_speech", "unsure", "quiet"],
)
def test_known_phrases_are_rejected_when_anything_is_doubtful(text: str, doubt: dict[str, float]) -> None:
    audio = LOUD if doubt else QUIET
    assert rejection_reason(result(text, **doubt), audio) == "known_hallucination"


@pytest.mark.parametrize("text", ["Thank you.", "Okay.", "Thank you very much!"])
def test_clearly_spoken_known_phrase_passes(text: str) -> None:
    assert rejection_reason(result(text), LOUD) is None


def test_known_phrase_inside_a_sentence_is_not_special() -> None:
    assert rejection_reason(result("Thank you for the coffee.", no_speech_prob=0.3), LOUD) is None


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("42.", "en"),  # Whisper writes spoken numbers as digits: "Forty-two." comes out as "42."
        ("1999", "en"),
        ("Hoy el agua del mar está muy fría.", "es"),
        ("Привет, как дела?", "ru"),
        ("今日はいい天気ですね。", "ja"),
        ("مرحبا بكم", "ar"),
        ("Γειά σου κόσμε", "el"),
    ],
)
def test_confident_speech_in_any_script_passes(text: str, language: str) -> None:
    """Digits, and the speaker's own script from a multilingual model (``base``), are not "empty"."""
    confident = AsrResult(text=text, language=language, avg_logprob=-0.2, no_speech_prob=0.01)
    assert rejection_reason(confident, LOUD) is None
