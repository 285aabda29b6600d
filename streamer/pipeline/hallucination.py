"""Guards against Whisper's known hallucinations on silence, noise and breath.

Whisper was trained on subtitles, so given non-speech it tends to emit the phrases subtitle files are full
of ("Thank you.", "Thanks for watching!") or loops. The VAD keeps most non-speech away; these rules catch
what gets through. They use the model's own confidence, so a clearly spoken "thank you" still passes.
"""

from __future__ import annotations

import re

import numpy as np

from streamer.pipeline.asr import AsrResult
from streamer.pipeline.audio import Audio
from streamer.pipeline.stability import is_looping

# phrases Whisper is known to produce from silence/noise (normalised: lower case, letters and spaces)
KNOWN_PHRASES = frozenset(
    {
        "thank you",
        "thank you very much",
        "thanks for watching",
        "thank you for watching",
        "thanks for listening",
        "thank you for listening",
        "please subscribe",
        "like and subscribe",
        "subscribe to my channel",
        "subtitles by the amara org community",
        "you",
        "bye",
        "bye bye",
        "so",
        "oh",
        "uh",
        "um",
        "hmm",
        "okay",
        "the end",
        "i'm sorry",
    }
)

NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
MIN_LOGPROB = -1.6
MAX_COMPRESSION_RATIO = 2.4
QUIET_RMS = 0.01


def normalise(text: str) -> str:
    """Lower-case words (and numbers) of any script, without punctuation."""
    return " ".join(re.sub(r"[^\w' ]+|_+", " ", text.lower()).split())


def rms(audio: Audio) -> float:
    return float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0


def rejection_reason(result: AsrResult, audio: Audio) -> str | None:
    """Why this result must not become a final, or None if it is believable speech."""
    words = normalise(result.text)
    if not words:
        return "empty"
    if result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD:
        return "no_speech"
    if result.avg_logprob < MIN_LOGPROB:
        return "low_confidence"
    if result.compression_ratio > MAX_COMPRESSION_RATIO or is_looping(words.split()):
        return "repetition"
    if words in KNOWN_PHRASES and (
        result.no_speech_prob > 0.1 or result.avg_logprob < -0.5 or rms(audio) < QUIET_RMS
    ):
        return "known_hallucination"
    return None
