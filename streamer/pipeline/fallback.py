"""From a first decode to a final: Whisper's temperature fallback, then a verdict on what was heard.

A final is only dropped when every decode failed *and* the audio does not hold clear speech. When clear
speech yields nothing believable, the session is told (``unrecognized_speech``) instead of silently losing
a sentence. Each fallback decode goes through the batcher like any other final, so other sessions' finals
keep their turn between attempts. The ladder is paid for from a budget (``allow``, see
``guards/load.py``'s ``FallbackBudget``): once a session or its key has spent it, the utterance keeps
what its first decode gave, and the attempt is counted as :data:`BUDGET_SPENT`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streamer.pipeline.asr import (
    FALLBACK_LADDER,
    FRAMES_PER_S,
    FULL_WINDOW_FRAMES,
    AsrRequest,
    AsrResult,
    compression_ratio,
)
from streamer.pipeline.audio import Audio
from streamer.pipeline.hallucination import (
    RETRYABLE,
    SENTENCE_END,
    cut_restart,
    needs_fallback,
    normalise,
    rejection_reason,
    repeated_sentence,
    restart_period,
)

# An utterance with at least this much confidently voiced audio (Silero probability >= 0.8) was speech:
# losing it is worth telling the client about. Breath, clicks and hum stay well below it.
CLEAR_SPEECH_MS = 500


# Read speech runs at 2.5-4 words per second of voiced audio; a trimmed loop under this rate left words out.
MIN_WORDS_PER_VOICED_S = 1.8


# the attempt label (``decode_attempts`` metric, the verdict's attempts) of a ladder stopped for its budget
BUDGET_SPENT = "budget_spent"


class Outcome(enum.Enum):
    FIRST_TRY = "first_try"
    LOOP_TRIMMED = "loop_trimmed"
    FALLBACK_RESCUED = "fallback_rescued"
    DROPPED_NONSPEECH = "dropped_nonspeech"
    UNRECOGNIZED_SPEECH = "unrecognized_speech"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    result: AsrResult | None  # the text to deliver; None when there is no final
    reason: str | None = None  # why the first decode was not taken as it was
    attempts: tuple[str, ...] = ()


Submit = Callable[[AsrRequest], Awaitable[AsrResult]]


async def settle(
    first: AsrResult,
    request: AsrRequest,
    audio: Audio,
    speech_ms: int,
    submit: Submit,
    voiced_ms: int = 0,
    allow: Callable[[], bool] | None = None,
) -> Verdict:
    """Decide what ``first`` (the fast greedy decode of ``request``) becomes, decoding again if needed.

    ``allow`` is asked before each fallback decode; False stops the ladder (the budget is spent)."""
    reason = rejection_reason(first, audio)
    if reason is None and not needs_fallback(first):
        if _short_window_repeat(first) and (allow is None or allow()):
            return await _check_repeat(first, request, audio, submit)
        return Verdict(Outcome.FIRST_TRY, first, attempts=(first.decode,))
    trimmed = trim_loop(first, voiced_ms)
    if trimmed is not None and rejection_reason(trimmed, audio) is None:
        return Verdict(Outcome.LOOP_TRIMMED, trimmed, reason, (first.decode,))
    attempts = [first.decode]
    candidates = [first]
    if reason is None or reason in RETRYABLE:
        for decode in FALLBACK_LADDER:
            if allow is not None and not allow():
                attempts.append(BUDGET_SPENT)
                break
            result = await submit(dataclasses.replace(request, decode=decode))
            attempts.append(decode.label)
            verdict = rejection_reason(result, audio)
            if verdict is None and not needs_fallback(result):
                return Verdict(Outcome.FALLBACK_RESCUED, result, reason, tuple(attempts))
            if verdict is not None and verdict not in RETRYABLE:
                break  # the model now calls it non-speech: more sampling will not find words
            candidates.append(result)
        # every attempt failed Whisper's test; the likeliest one our guards still believe is kept
        believable = [c for c in candidates if rejection_reason(c, audio) is None]
        if believable:
            best = max(believable, key=lambda c: c.avg_logprob)
            outcome = Outcome.FIRST_TRY if best is first else Outcome.FALLBACK_RESCUED
            return Verdict(outcome, best, reason or "low_confidence", tuple(attempts))
    outcome = Outcome.UNRECOGNIZED_SPEECH if speech_ms >= CLEAR_SPEECH_MS else Outcome.DROPPED_NONSPEECH
    return Verdict(outcome, None, reason or "low_confidence", tuple(attempts))


def _short_window_repeat(result: AsrResult) -> bool:
    """A short sentence said twice, decoded in a window shorter than the 30 s the model was trained on."""
    return (
        result.window_s < FULL_WINDOW_FRAMES / FRAMES_PER_S
        and repeated_sentence(result.text.split()) is not None
    )


async def _check_repeat(first: AsrResult, request: AsrRequest, audio: Audio, submit: Submit) -> Verdict:
    """Decode a short repeated sentence again in the full window: the speaker's repeat, or the window's.

    On short commands (1-2 s of speech in a 5 s window, 3-4 s of it padding) tiny.en writes the command
    and then writes it again, with greedy and beam search alike; in the 30 s window it writes it once
    (BENCHMARKS.md, "Short commands"). A phrase the speaker did say twice is said twice there too, and is
    kept; so is the first decode when the check is not believable.
    """
    check = await submit(dataclasses.replace(request, decode=FALLBACK_LADDER[0]))
    attempts = (first.decode, check.decode)
    if rejection_reason(check, audio) is None and not needs_fallback(check):
        return Verdict(Outcome.FALLBACK_RESCUED, check, "repetition", attempts)
    return Verdict(Outcome.FIRST_TRY, first, "repetition", attempts)


def ends_sentence(result: AsrResult, audio: Audio, voiced_ms: int = 0) -> bool:
    """Whether a decode of the audio so far reads as a finished sentence (believable, final punctuation).

    Whisper punctuates: a clause cut at a comma decodes with a trailing comma or none, or loops. The
    segmenter holds such a pause longer instead of ending the utterance in the middle of a sentence. A
    decode that wrote the whole sentence and started over is judged by its first copy, as the final will
    be: on the piper corpus such loops made finished sentences wait and merge with the next one.
    """
    if rejection_reason(result, audio) is not None or needs_fallback(result):
        trimmed = trim_loop(result, voiced_ms)
        if trimmed is None or rejection_reason(trimmed, audio) is not None:
            return False
        result = trimmed
    tokens = result.text.split()
    text = " ".join(tokens[: repeated_sentence(tokens) or len(tokens)])  # judged by its first copy
    if not text.endswith(SENTENCE_END):
        return False
    return not (result.language == "en" and _dependent_clause_only(text))


# English words that open a clause which needs a main clause after it ("When the rain stopped, ..."). Whisper
# punctuates such a clause cut at its comma with a full stop ("When the rain stopped."), so the punctuation
# alone cannot tell the comma's pause (measured at 470 ms in piper speech) from the end of a sentence (gaps of
# 300 ms upward in conversation): on the piper corpus at 20 dB SNR both are ~13 windows under the VAD's end
# threshold. A text that opens with one of these words and has no comma yet is held.
_SUBORDINATORS = frozenset(
    {
        *("when", "whenever", "if", "unless", "although", "though", "because", "since", "while", "whilst"),
        *("after", "before", "until", "till", "once", "whereas", "wherever", "as", "during"),
    }
)
_TRAILING = frozenset({"and", "but", "or", "so", "because", "the", "a", "an", "to", "of", "with", "that"})


def _dependent_clause_only(text: str) -> bool:
    words = normalise(text).split()
    if not words:
        return False
    return (words[0] in _SUBORDINATORS and "," not in text) or words[-1] in _TRAILING


def trim_loop(result: AsrResult, voiced_ms: int) -> AsrResult | None:
    """The transcript a decode had finished before it started over, if that is all that went wrong.

    With silence after the speech, a greedy decoder that has written the whole utterance often writes it
    again ("Keep your voice down. Keep your voice down. Keep your voice d"). When the text is one opening
    phrase repeated from the start (the last copy possibly cut off, maybe after only a few words: see
    :func:`~streamer.pipeline.hallucination.cut_restart`), the first copy is the transcript: no
    second decode needed (on the multilingual base model a fallback decode over 30 s costs seconds). Any
    other repetition returns None and goes down the fallback ladder, and so does a first copy too short
    for the speech heard (the loop began before the speaker finished: "She opened the window. She opened
    the window." for a whole sentence).
    """
    tokens = result.text.split()
    # a short sentence first: cut_restart cuts at the last sentence end, and would keep two copies of it
    n = restart_period([normalise(t) for t in tokens]) or repeated_sentence(tokens) or cut_restart(tokens)
    if n is None or n < MIN_WORDS_PER_VOICED_S * voiced_ms / 1000:
        return None
    text = " ".join(tokens[:n])
    return dataclasses.replace(result, text=text, compression_ratio=compression_ratio(text))
