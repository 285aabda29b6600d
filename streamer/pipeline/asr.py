"""Batched Whisper transcription on CTranslate2.

One ``transcribe_batch`` call stacks the log-Mel features of several utterances into a single encoder pass
and a single ``generate``. Whisper's reference pipeline pads every input to a 30 s window; on a CPU the
encoder then dominates, so utterances are padded only to the nearest length bucket (CTranslate2's encoder
accepts shorter inputs). This module is synchronous: the batcher calls it from its own thread.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from streamer.pipeline.audio import MODEL_RATE, Audio
from streamer.pipeline.features import extend, log_mel, pin_blas_threads

log = logging.getLogger(__name__)

FRAMES_PER_S = 100  # Whisper's hop of 160 samples at 16 kHz
FULL_WINDOW_FRAMES = 3000
# Finer buckets cost less encoder time (it follows the window: ~9 ms per second of window for a batch of
# four on these CPUs) but loop more: decoding growing prefixes of four realistic recordings (100 decodes,
# silent-audio padding), 5 s steps gave 6 loops and 4 collapsed hypotheses, 3/5/8 s steps 9 and 5, 2 s
# steps 9 and 6. Fallback decodes at 30 s cost far more than the saving, so the steps stay at 5 s.
BUCKETS_S = (5, 10, 15, 20, 30)
MAX_PROMPT_TOKENS = 223  # Whisper's previous-text budget: half its 448-token context, less sot_prev


@dataclass(frozen=True)
class Decode:
    """How to decode: greedy on a length bucket (the fast path), or one step of the fallback ladder.

    The ladder follows Whisper's own recipe (and faster-whisper's ``transcribe``): when a decode loops or
    has low confidence, decode again with beam search, then by sampling at rising temperatures. Fallback
    steps use the full 30 s window the model was trained on: a short utterance padded to a short window is
    exactly where greedy decoding loops ("keep your voice down. keep your voice down. ...").
    """

    label: str = "greedy"
    beam_size: int = 1
    temperature: float = 0.0
    best_of: int = 1
    full_window: bool = False


GREEDY = Decode()
FALLBACK_LADDER = (
    Decode("beam5", beam_size=5, full_window=True),
    *(Decode(f"t{t:.1f}", temperature=t, best_of=5, full_window=True) for t in (0.2, 0.4, 0.6, 0.8, 1.0)),
)


@dataclass(frozen=True)
class AsrRequest:
    audio: Audio
    task: str = "transcribe"
    language: str | None = None
    decode: Decode | None = None  # None: the engine's default (greedy, or its configured beam size)
    # When ``language`` is None, the languages detection may choose from (empty: any the model knows).
    # Detection is per request, so requests with different lists share a model call.
    languages: tuple[str, ...] = ()
    # the log-Mel features at the request's own length bucket, computed when it was submitted
    # (WhisperEngine.prepare); None: computed on the model thread
    mel: np.ndarray | None = field(default=None, compare=False, repr=False)
    # What a request may ask of the model. ``prompt`` (Whisper's previous text) and ``hotwords`` (words
    # to favour, put before the prompt as faster-whisper does) are per item inside one model call;
    # ``temperature`` (above 0: sample instead of greedy) is per call, so it is part of the group.
    prompt: str = ""
    hotwords: str = ""
    temperature: float = 0.0
    logprobs: bool = False  # the result carries each token's log-probability

    @property
    def group(self) -> tuple[str, str | None, str]:
        """What must be equal inside one model call."""
        return (self.task, self.language, self.decode.label if self.decode else self.default_label)

    @property
    def default_label(self) -> str:
        """The decode without a ladder step: the engine's default, or one sample at the temperature."""
        return f"t{self.temperature:g}" if self.temperature > 0 else "default"


@dataclass(frozen=True)
class AsrResult:
    text: str
    language: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0
    decode: str = "greedy"  # which decode produced it (Decode.label)
    model_s: float = 0.0  # this request's share of its model call (the call's time split evenly)
    padding_s: float = 0.0  # silence the window added to the audio (work that transcribed nothing)
    window_s: float = 0.0  # the model input window this result was decoded in
    # the detected language's probability (among the request's ``languages`` when it gave some); None
    # when the language was given, not detected
    language_probability: float | None = None
    temperature: float = 0.0  # the sampling temperature of the decode that produced it
    tokens: tuple[int, ...] = ()  # the text's token ids
    # with ``AsrRequest.logprobs``: each token's text and log-probability, in order
    logprobs: tuple[tuple[str, float], ...] | None = None


class AsrEngine(Protocol):
    """What the batcher needs from a speech model; tests use fakes with the same shape."""

    name: str
    multilingual: bool

    def languages(self) -> frozenset[str]: ...

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]: ...


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 1.0


def bucket_frames(n_samples: int, pad_to_buckets: bool) -> int:
    """The padded feature length for audio of ``n_samples``: the smallest bucket that holds it."""
    if not pad_to_buckets:
        return FULL_WINDOW_FRAMES
    frames = n_samples // 160 + 1
    for seconds in BUCKETS_S:
        if frames <= seconds * FRAMES_PER_S:
            return seconds * FRAMES_PER_S
    return FULL_WINDOW_FRAMES


def default_workers(workers: int, device: str) -> int:
    """Model calls at once: ``workers`` when set, else two on a CPU with two cores or more (one batch's
    encoder beside another's decoder), one on a GPU (it runs one call faster than two)."""
    if workers > 0:
        return workers
    return 2 if device == "cpu" and (os.cpu_count() or 1) >= 2 else 1


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


class WhisperEngine:
    """A CTranslate2 Whisper model with batched, length-bucketed inference."""

    def __init__(
        self,
        model_dir: Path,
        *,
        name: str | None = None,
        device: str = "auto",
        compute_type: str = "int8",
        beam_size: int = 1,
        pad_to_buckets: bool = True,
        threads: int = 0,
        workers: int = 1,
    ) -> None:
        import ctranslate2
        import tokenizers
        from faster_whisper.feature_extractor import FeatureExtractor

        self.device = resolve_device(device)
        if self.device == "cuda" and compute_type == "int8":
            compute_type = "int8_float16"
        self.name = name or model_dir.name
        self.model = ctranslate2.models.Whisper(
            str(model_dir),
            device=self.device,
            compute_type=compute_type,
            # one replica per batcher worker, so that many batches run at once; ``threads`` (default: the
            # cores) are shared among them: two replicas of two threads each on two cores would fight
            inter_threads=workers,
            intra_threads=max(1, (threads or os.cpu_count() or 1) // workers),
        )
        self.workers = workers
        pin_blas_threads()  # numpy's features beside the model: one BLAS thread, not one per core
        self.multilingual = bool(self.model.is_multilingual)
        self._hf_tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._features = FeatureExtractor(feature_size=self.model.n_mels)
        self.beam_size = beam_size
        # Short windows for every model. The multilingual base model loops on windows shorter than the 30 s
        # it was trained on more often than tiny.en does ("sea, sea, sea", or the sentence twice), which
        # used to drop the final, so it always got 30 s: 2.2-4.7 s per utterance on two cores, against
        # 0.1-1.0 s in a 5 s window. Now a loop is trimmed when it is the sentence written again, and any
        # other failed decode falls back to the full window (fallback.py): on the es/de espeak fixtures
        # and six piper sentences, 4 of 10 decodes needed that, and each came out right.
        self.pad_to_buckets = pad_to_buckets
        self.compute_type = compute_type
        self._suppress: list[int] | None = None

    def languages(self) -> frozenset[str]:
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        return frozenset(_LANGUAGE_CODES) if self.multilingual else frozenset({"en"})

    def _tokenizer(self, task: str, language: str) -> object:
        from faster_whisper.tokenizer import Tokenizer

        return Tokenizer(self._hf_tokenizer, self.multilingual, task=task, language=language)

    def features(self, audio: Audio, frames: int) -> np.ndarray:
        """Log-Mel features of ``audio`` padded with silence to ``frames`` (:func:`features.log_mel`)."""
        return log_mel(self._features, audio, frames)

    def prepare(self, request: AsrRequest) -> AsrRequest:
        """``request`` with its features, at its own length bucket: the batcher calls this when the
        request is submitted, on its feature thread, so the model thread does not wait for numpy."""
        return replace(request, mel=self.features(request.audio[: 30 * MODEL_RATE], self.window(request)))

    def window(self, request: AsrRequest) -> int:
        """The feature frames ``request`` is decoded in: its length bucket, or the full 30 s window."""
        decode = request.decode or self.default_decode
        return bucket_frames(
            min(request.audio.size, 30 * MODEL_RATE), self.pad_to_buckets and not decode.full_window
        )

    def _mel(self, request: AsrRequest, frames: int) -> np.ndarray:
        if request.mel is not None and request.mel.shape[1] <= frames:
            return extend(request.mel, frames)
        return self.features(request.audio[: 30 * MODEL_RATE], frames)

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        """Transcribe ``requests`` in as few model calls as their decode options allow (usually one)."""
        # CTranslate2 decodes a batch only when the start of transcript sits at the same position in every
        # item, so items share a call when their prompts are as long (those without one, usually all).
        # Padding the shorter prompts instead (with <|startofprev|> or spaces) changed 4 of 5 tiny.en
        # transcripts of the fixtures, some into loops.
        groups: dict[tuple[Decode, int], list[int]] = {}
        prompts = [self._prompt(request) for request in requests]
        for i, request in enumerate(requests):
            groups.setdefault((self._decode_for(request), len(prompts[i])), []).append(i)
        out: list[AsrResult | None] = [None] * len(requests)
        for (decode, _), indices in groups.items():
            decoded = self._decode([requests[i] for i in indices], decode, [prompts[i] for i in indices])
            for i, result in zip(indices, decoded, strict=True):
                out[i] = result
        return [r for r in out if r is not None]

    @property
    def default_decode(self) -> Decode:
        return GREEDY if self.beam_size <= 1 else Decode(f"beam{self.beam_size}", beam_size=self.beam_size)

    def _decode_for(self, request: AsrRequest) -> Decode:
        if request.decode is not None:
            return request.decode
        if request.temperature > 0:  # the client's temperature: one sample at it
            return Decode(request.default_label, temperature=request.temperature)
        return self.default_decode

    def _prompt(self, request: AsrRequest) -> list[int]:
        """``request``'s prompt tokens ahead of the start sequence, as faster-whisper builds them: the
        hotwords, then the previous text, at most half the decoder's context (its most recent part)."""
        encode = self._hf_tokenizer.encode
        hotwords = (
            encode(" " + request.hotwords.strip(), add_special_tokens=False).ids if request.hotwords else []
        )
        previous = (
            encode(" " + request.prompt.strip(), add_special_tokens=False).ids if request.prompt else []
        )
        if not hotwords and not previous:
            return []
        room = MAX_PROMPT_TOKENS
        hotwords = hotwords[:room]
        previous = previous[-(room - len(hotwords)) :] if room > len(hotwords) else []
        sot_prev = self._hf_tokenizer.token_to_id("<|startofprev|>")
        if sot_prev is None:  # every Whisper tokenizer has it
            raise ValueError("the model's tokenizer has no <|startofprev|> token")
        return [sot_prev, *hotwords, *previous]

    def _decode(
        self, requests: Sequence[AsrRequest], decode: Decode, previous: Sequence[list[int]]
    ) -> list[AsrResult]:
        import ctranslate2

        if not requests:
            return []
        started = time.perf_counter()
        longest = max(r.audio.size for r in requests)
        frames = bucket_frames(min(longest, 30 * MODEL_RATE), self.pad_to_buckets and not decode.full_window)
        batch = np.stack([self._mel(r, frames) for r in requests])
        encoded = self.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)
        detected = self._languages(requests, encoded)
        prompts = []
        for req, prompt, (lang, _) in zip(requests, previous, detected, strict=True):
            tok = self._tokenizer(req.task, lang)
            prompts.append([*prompt, *tok.sot_sequence, tok.no_timestamps])  # type: ignore[attr-defined]
        if self._suppress is None:
            from faster_whisper.transcribe import get_suppressed_tokens

            self._suppress = list(get_suppressed_tokens(tok, (-1,)) or [])
        # Bounded decoding. A batch decodes until its longest hypothesis stops, so one looping partial holds
        # every job in its batch for the whole budget: on the corpus bench (24 sessions) model calls
        # averaged 311 ms for 4 jobs. Fast speech is ~4 words (~6 tokens with punctuation) per second, and
        # more words than 5 per second are rejected anyway (hallucination.MAX_WORDS_PER_S).
        # (CTranslate2 counts the prompt in max_length: a request's previous text does not eat the budget)
        max_len = min(448, int(longest / MODEL_RATE * 8) + 12 + len(previous[0]))
        sampling = decode.temperature > 0
        results = self.model.generate(
            encoded,
            prompts,
            beam_size=1 if sampling else decode.beam_size,
            num_hypotheses=decode.best_of if sampling else 1,
            sampling_temperature=decode.temperature if sampling else 1.0,
            sampling_topk=0 if sampling else 1,
            max_length=max_len,
            return_scores=True,
            return_no_speech_prob=True,
            return_logits_vocab=any(r.logprobs for r in requests),
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )
        eot = self._hf_tokenizer.token_to_id("<|endoftext|>")
        share = (time.perf_counter() - started) / len(requests)
        out = []
        for request, result, (lang, probability) in zip(requests, results, detected, strict=True):
            # scores are length-normalized log-probabilities; of several samples keep the likeliest
            scores = result.scores or [0.0] * len(result.sequences_ids)
            best = max(range(len(scores)), key=scores.__getitem__)
            tokens = [t for t in result.sequences_ids[best] if t < eot]
            logprobs = self._logprobs(result, best, tokens) if request.logprobs else None
            text = self._hf_tokenizer.decode(tokens).strip()
            out.append(
                AsrResult(
                    text=text,
                    language=lang,
                    avg_logprob=float(result.scores[best]) if result.scores else 0.0,
                    no_speech_prob=float(result.no_speech_prob),
                    compression_ratio=compression_ratio(text),
                    decode=decode.label,
                    model_s=share,
                    padding_s=max(0.0, frames / FRAMES_PER_S - request.audio.size / MODEL_RATE),
                    window_s=frames / FRAMES_PER_S,
                    language_probability=probability,
                    temperature=decode.temperature,
                    tokens=tuple(tokens),
                    logprobs=logprobs,
                )
            )
        return out

    def _logprobs(self, result: object, best: int, tokens: list[int]) -> tuple[tuple[str, float], ...]:
        """Each of ``tokens``' text and log-probability, from the decode's per-step logits."""
        steps = result.logits[best]  # type: ignore[attr-defined]
        out = []
        for token, logits in zip(tokens, steps, strict=False):
            row = np.asarray(logits, dtype=np.float32)
            top = float(row.max())
            logprob = float(row[token] - top - np.log(np.exp(row - top).sum()))
            out.append((self._hf_tokenizer.decode([token]), logprob))
        return tuple(out)

    def _languages(self, requests: Sequence[AsrRequest], encoded: object) -> list[tuple[str, float | None]]:
        """Each request's language and, where it was detected, its probability.

        Detection reads the encoder output already computed for the decode (one decoder step for the
        whole batch), so every utterance of an auto-language session gets its own language.
        """
        if not self.multilingual:
            return [("en", None)] * len(requests)
        if all(r.language for r in requests):
            return [(r.language or "", None) for r in requests]
        detected = self.model.detect_language(encoded)
        return [
            (r.language, None) if r.language else pick_language(scores, r.languages)
            for r, scores in zip(requests, detected, strict=True)
        ]


def pick_language(scores: Sequence[tuple[str, float]], allowed: Sequence[str]) -> tuple[str, float]:
    """The likeliest language of a detection (``[("<|en|>", 0.93), ...]``), among ``allowed`` if given.

    Restricted to a list, the probability is renormalized over the listed languages: it says how sure
    the model is of this language against the others the client expects, not against all 99.
    """
    ranked = [(token[2:-2], p) for token, p in scores]
    if allowed:
        ranked = [(lang, p) for lang, p in ranked if lang in allowed]
        if not ranked:  # validation admits only languages the model has, so this is a model fault
            raise ValueError(f"detection scored none of the languages {list(allowed)}")
    lang, p = max(ranked, key=lambda lp: lp[1])
    total = sum(q for _, q in ranked) if allowed else 1.0
    return lang, float(p / total) if total > 0 else float(p)
