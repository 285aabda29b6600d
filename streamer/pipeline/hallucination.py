"""Guards against Whisper's known hallucinations on silence, noise and breath.

Whisper was trained on subtitles, so given non-speech it tends to emit the phrases subtitle files are full
of ("Thank you.", "Thanks for watching!") or loops. The VAD keeps most non-speech away; these rules catch
what gets through. They use the model's own confidence, so a clearly spoken "thank you" still passes.
"""

from __future__ import annotations

import re

import numpy as np

from streamer.pipeline.asr import AsrResult
from streamer.pipeline.audio import MODEL_RATE, Audio
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
# Fast read speech is ~4 words/s and an utterance carries ~0.4 s of pre-roll and tail: more than this many
# words per second of audio is a decode that repeated itself, not speech.
MAX_WORDS_PER_S = 5.0
# A phrase this long said twice back to back is a decoding loop (people repeat "I don't know", not
# "please keep your voice down"); shorter repeats must occur three times (stability.is_looping).
MIN_REPEATED_PHRASE = 4

# Reasons that say the decode went wrong (worth decoding again), as opposed to the audio not being speech.
RETRYABLE = frozenset({"low_confidence", "repetition", "implausible_rate"})


SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
CLOSING_QUOTES = "\"')»”"


def ends_with_sentence_end(text: str) -> bool:
    """Whether ``text`` (a word, a transcript) ends a sentence; closing quotes after the mark count."""
    return text.rstrip().rstrip(CLOSING_QUOTES).endswith(SENTENCE_END)


def normalise(text: str) -> str:
    """Lower-case words (and numbers) of any script, without punctuation."""
    return " ".join(re.sub(r"[^\w' ]+|_+", " ", text.lower()).split())


def rms(audio: Audio) -> float:
    return float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0


def repeats_phrase(words: list[str], min_n: int = MIN_REPEATED_PHRASE) -> bool:
    """True if a phrase of ``min_n`` or more words is immediately said again, or the text starts over."""
    for n in range(min_n, len(words) // 2 + 1):
        for start in range(len(words) - 2 * n + 1):
            if words[start : start + n] == words[start + n : start + 2 * n]:
                return True
    return restart_period(words) is not None


def cut_restart(tokens: list[str]) -> int | None:
    """The words before a restart too short for :func:`restart_period`, if the text ends in one.

    A decoder that finished the sentence and began it again, cut off by the token budget after a few
    words: "If you need help with the boxes, just let me know. If you need". Seen at 16 concurrent
    sessions on the piper corpus (batched numerics differ from a batch of one), where every session got
    that final. The text after the last sentence end must repeat the opening, be at least two words and
    shorter than the first copy, and be unfinished (no sentence end of its own).
    """
    if len(tokens) < 3 or tokens[-1].endswith(SENTENCE_END):
        return None
    for k in range(len(tokens) - 2, 0, -1):
        if ends_with_sentence_end(tokens[k]):
            tail = [normalise(t) for t in tokens[k + 1 :]]
            opening = [normalise(t) for t in tokens[: len(tail)]]
            return k + 1 if 2 <= len(tail) <= k and tail == opening else None
    return None


def restart_period(words: list[str], min_n: int = MIN_REPEATED_PHRASE) -> int | None:
    """The length of the opening a text repeats from its start, if it does so for ``min_n`` words or more.

    "the meeting starts at noon so bring your notes the meeting starts at noon so bring" is a decoder
    that finished the sentence and started over (the second copy cut off where the token budget ended).
    """
    for n in range(min_n, len(words) - min_n + 1):
        if all(words[i] == words[i - n] for i in range(n, len(words))):
            return n
    return None


def repeated_sentence(tokens: list[str]) -> int | None:
    """The words of a short sentence the text then says again from its start, if that is all it says.

    "Call my sister. Call my sister." and "Start the dishwasher. Start the dishwasher. Start": a decoder
    that finished a short command in a window mostly of silence and wrote it again. Too short for
    :func:`restart_period` (people do repeat short phrases, so this is a suspicion, not a verdict): the
    first copy has two or more words, ends a sentence, and everything after it repeats it (the last
    copy possibly cut off).
    """
    words = [normalise(t) for t in tokens]
    for n in range(2, min(MIN_REPEATED_PHRASE, len(words) // 2 + 1)):
        if not ends_with_sentence_end(tokens[n - 1]):
            continue
        if all(words[i] == words[i - n] for i in range(n, len(words))):
            return n
    return None


def needs_fallback(result: AsrResult) -> bool:
    """Whisper's own test for a failed decode: too repetitive, or too unlikely (unless it is silence)."""
    if result.compression_ratio > MAX_COMPRESSION_RATIO:
        return True
    silent = result.no_speech_prob > NO_SPEECH_THRESHOLD
    return result.avg_logprob < LOGPROB_THRESHOLD and not silent


def rejection_reason(result: AsrResult, audio: Audio) -> str | None:
    """Why this result must not become a final, or None if it is believable speech."""
    words = normalise(result.text)
    if not words:
        return "empty"
    if result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD:
        return "no_speech"
    tokens = words.split()
    looping = is_looping(tokens) or repeats_phrase(tokens) or cut_restart(result.text.split()) is not None
    if result.compression_ratio > MAX_COMPRESSION_RATIO or looping:
        return "repetition"
    if len(tokens) > 2 + MAX_WORDS_PER_S * audio.size / MODEL_RATE:
        return "implausible_rate"
    if result.avg_logprob < MIN_LOGPROB:
        return "low_confidence"
    if words in KNOWN_PHRASES and (
        result.no_speech_prob > 0.1 or result.avg_logprob < -0.5 or rms(audio) < QUIET_RMS
    ):
        return "known_hallucination"
    return None
