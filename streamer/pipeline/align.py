"""Word timestamps: CTranslate2 Whisper's cross-attention alignment of a final's text to its audio.

A final's text is known; what is missing is when each word was said. ``Whisper.align`` runs the decoder
once over the given tokens and returns, for every text token, the encoder frame (20 ms) where dynamic time
warping of the alignment heads' attention puts it. A word starts at the frame where its first token starts
and ends where the next word starts; its probability is the mean of its tokens' probabilities.

Alignment jobs go through the same micro-batcher as transcription (one model thread, one queue, the same
breaker): an :class:`AlignRequest` groups only with other alignments of the same language, and
:func:`run_batch` sends each batch to the right model call.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamer.errors import StreamerError
from streamer.pipeline.asr import AsrEngine, AsrRequest, AsrResult, WhisperEngine, bucket_frames
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.batcher import MicroBatcher
from streamer.protocol import Word

log = logging.getLogger(__name__)

SAMPLES_PER_MEL_FRAME = 160  # 10 ms at 16 kHz
ENCODER_FRAMES_PER_S = 50  # the encoder halves the mel frames: 20 ms each


@dataclass(frozen=True)
class WordTiming:
    """One word, in milliseconds from the start of the aligned audio."""

    word: str
    start_ms: int
    end_ms: int
    probability: float


@dataclass(frozen=True)
class AlignRequest(AsrRequest):
    """Align ``text`` (what the model transcribed from ``audio``) to ``audio``."""

    text: str = ""

    @property
    def group(self) -> tuple[str, str | None, str]:
        return ("align", self.language, "align")


@dataclass(frozen=True)
class AlignResult(AsrResult):
    words: tuple[WordTiming, ...] = field(default_factory=tuple)


def supports_word_timestamps(engine: AsrEngine) -> bool:
    """Whether ``engine`` can align words (a CTranslate2 Whisper model; test doubles cannot)."""
    return isinstance(engine, WhisperEngine)


def run_batch(engine: AsrEngine, requests: Sequence[AsrRequest]) -> list[AsrResult]:
    """The batcher's model call: alignments to :func:`align_batch`, everything else to transcription."""
    aligns = [i for i, r in enumerate(requests) if isinstance(r, AlignRequest)]
    if not aligns:
        return engine.transcribe_batch(requests)
    if not isinstance(engine, WhisperEngine):
        # not a model failure (the breaker must not count it): an engine without alignment has no words
        return [
            AlignResult(text=r.text, language=r.language or "")
            if isinstance(r, AlignRequest)
            else engine.transcribe_batch([r])[0]
            for r in requests
        ]
    others = [i for i in range(len(requests)) if i not in set(aligns)]
    out: list[AsrResult | None] = [None] * len(requests)
    batch = [r for r in requests if isinstance(r, AlignRequest)]
    for i, aligned in zip(aligns, align_batch(engine, batch), strict=True):
        out[i] = aligned
    for i, result in zip(others, engine.transcribe_batch([requests[i] for i in others]), strict=True):
        out[i] = result
    return [r for r in out if r is not None]


def align_batch(engine: WhisperEngine, requests: Sequence[AlignRequest]) -> list[AsrResult]:
    """Word timings for each request, in one encoder pass and one alignment call (one language)."""
    import ctranslate2

    results: list[AsrResult] = [AlignResult(text=r.text, language=r.language or "en") for r in requests]
    todo = [i for i, r in enumerate(requests) if r.text.strip() and r.audio.size >= SAMPLES_PER_MEL_FRAME]
    if not todo:
        return results
    language = requests[todo[0]].language or "en"
    tokenizer = engine._tokenizer("transcribe", language)
    texts = [tokenizer.encode(" " + requests[i].text.strip()) for i in todo]  # type: ignore[attr-defined]
    audios = [requests[i].audio[: 30 * MODEL_RATE] for i in todo]
    frames = bucket_frames(max(a.size for a in audios), engine.pad_to_buckets)
    features = np.stack([engine.features(a, frames) for a in audios])
    encoded = engine.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)
    alignments = engine.model.align(
        encoded,
        list(tokenizer.sot_sequence),  # type: ignore[attr-defined]
        texts,
        [min(frames, a.size // SAMPLES_PER_MEL_FRAME) for a in audios],
    )
    for i, tokens, alignment, audio in zip(todo, texts, alignments, audios, strict=True):
        words = _words(tokenizer, tokens, alignment, audio.size * 1000 // MODEL_RATE)
        results[i] = AlignResult(text=requests[i].text, language=language, words=tuple(words))
    return results


def _words(tokenizer: object, tokens: list[int], alignment: object, audio_ms: int) -> list[WordTiming]:
    """Group the tokens' aligned frames into words (punctuation joins the word before it)."""
    pairs = list(alignment.alignments)  # type: ignore[attr-defined]
    probs = np.asarray(alignment.text_token_probs, dtype=np.float64)  # type: ignore[attr-defined]
    if not pairs or probs.size < len(tokens):
        return []
    # the frame where each text token first appears on the warping path
    token_start = np.full(len(tokens) + 1, -1, dtype=np.int64)
    for token_index, frame in pairs:
        if 0 <= token_index <= len(tokens) and token_start[token_index] < 0:
            token_start[token_index] = frame
    last = int(max(frame for _, frame in pairs))
    for k in range(len(token_start) - 1, -1, -1):  # a token the path skipped starts with the next one
        if token_start[k] < 0:
            token_start[k] = token_start[k + 1] if k + 1 < len(token_start) else last
    eot = tokenizer.eot  # type: ignore[attr-defined]
    spelled, grouped = tokenizer.split_to_word_tokens([*tokens, eot])  # type: ignore[attr-defined]
    out: list[WordTiming] = []
    first = 0
    for text, word_tokens in zip(spelled, grouped, strict=True):
        n = len([t for t in word_tokens if t != eot])
        if n == 0:
            continue
        begin, end = first, first + n
        first = end
        start_ms = int(token_start[begin]) * 1000 // ENCODER_FRAMES_PER_S
        end_ms = int(token_start[end]) * 1000 // ENCODER_FRAMES_PER_S
        probability = float(probs[begin:end].mean())
        if text.strip() and all(c in string.punctuation for c in text.strip()) and out:
            prev = out[-1]
            out[-1] = WordTiming(prev.word + text.strip(), prev.start_ms, prev.end_ms, prev.probability)
            continue
        start_ms, end_ms = min(start_ms, audio_ms), min(max(end_ms, start_ms), audio_ms)
        out.append(WordTiming(text.strip(), start_ms, end_ms, probability))
    return [w for w in out if w.word]


async def word_timings(
    batcher: MicroBatcher[AsrRequest, AsrResult],
    session_id: str,
    audio: np.ndarray,
    text: str,
    language: str,
    offset_ms: int,
) -> list[Word] | None:
    """The words of a final on the session's audio clock, or None when the model could not align them
    (the final is delivered without them; its text matters more than its timing)."""
    request = AlignRequest(audio, "transcribe", language, text=text)
    try:
        result = await batcher.submit_final(session_id, request.group, request)
    except StreamerError as e:
        log.warning("word alignment failed: %s", e.code, extra={"session_id": session_id})
        return None
    if not isinstance(result, AlignResult):
        return None
    return [
        Word(
            word=w.word,
            start_ms=offset_ms + w.start_ms,
            end_ms=offset_ms + w.end_ms,
            probability=round(w.probability, 4),
        )
        for w in result.words
    ]
