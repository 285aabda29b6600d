"""Utterances longer than the model's window: decoded in windows, joined into one result.

Whisper hears at most 30 s at a time (the engine clips longer audio). A turn the client commits by hand
has no such limit, so its audio is cut into windows, each ending at the quietest 32 ms of its last
seconds (between words rather than inside one), and the windows' texts joined into the utterance's
one final.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from streamer.pipeline.asr import AsrResult
from streamer.pipeline.audio import MODEL_RATE, Audio
from streamer.pipeline.vad import WINDOW

SPAN_WINDOW_S = 28.0  # under the model's 30 s, so no window is clipped
CUT_LOOK_S = 4.0  # where a window may end: its quietest 32 ms in this many last seconds


def windowed(audio: Audio) -> bool:
    """Whether ``audio`` is decoded in windows (it is longer than one)."""
    return audio.size > SPAN_WINDOW_S * MODEL_RATE


def cuts(audio: Audio, window_s: float = SPAN_WINDOW_S, look_s: float = CUT_LOOK_S) -> list[int]:
    """Sample offsets that cut ``audio`` into windows of at most ``window_s``: [0, ..., audio.size]."""
    limit, look = int(window_s * MODEL_RATE), int(look_s * MODEL_RATE)
    bounds = [0]
    while audio.size - bounds[-1] > limit:
        start, end = bounds[-1], bounds[-1] + limit
        lo = max(start + WINDOW, end - look)
        frames = audio[lo:end][: (end - lo) // WINDOW * WINDOW].reshape(-1, WINDOW)
        quietest = int(np.argmin(np.square(frames).mean(axis=1)))
        bounds.append(lo + (quietest + 1) * WINDOW)
    bounds.append(audio.size)
    return bounds


def join(results: list[AsrResult]) -> AsrResult:
    """One result for consecutive windows: texts joined, model time summed, scores weighted by length."""
    first = results[0]
    weights = [max(1, len(r.text)) for r in results]
    total = sum(weights)
    return AsrResult(
        text=" ".join(r.text.strip() for r in results if r.text.strip()),
        language=first.language,
        avg_logprob=sum(r.avg_logprob * w for r, w in zip(results, weights, strict=True)) / total,
        no_speech_prob=min(r.no_speech_prob for r in results),
        compression_ratio=max(r.compression_ratio for r in results),
        decode=first.decode,
        model_s=sum(r.model_s for r in results),
        padding_s=sum(r.padding_s for r in results),
        window_s=sum(r.window_s for r in results),
        language_probability=first.language_probability,
    )


async def decode_windows(
    audio: Audio, decode: Callable[[Audio], Coroutine[Any, Any, AsrResult]], window_s: float = SPAN_WINDOW_S
) -> AsrResult:
    """Decode ``audio`` window by window (all queued at once, so the batcher may batch them) and join."""
    bounds = cuts(audio, window_s)
    async with asyncio.TaskGroup() as group:  # one failing cancels the rest
        parts = [group.create_task(decode(audio[a:b])) for a, b in itertools.pairwise(bounds)]
    return join([part.result() for part in parts])
