"""Whisper's log-Mel features, computed where they do not hold up the model.

The features of a request used to be computed on the model thread, right before ``encode``: 13-26 % of that
thread's time on a 2-core AMD EPYC (BENCHMARKS.md, "Where the time goes"), during which CTranslate2's threads
waited. Now each request's features are computed once, when it is submitted, on a feature thread of their
own (:class:`FeaturePool`), at the request's own length bucket; the model thread only extends them to the
batch's window (:func:`extend`), which is exact: the extension is silence, and the features of silence are
known without a transform.

numpy's BLAS (OpenBLAS) starts a thread per core at import and spins it after each product; beside a model
that wants both cores that thread only steals time, and under contention the hand-off costs more than the
80x201 product it speeds up (7 ms wall with one thread against 48 ms with two, same machine).
:func:`pin_blas_threads` limits it to one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from streamer.pipeline.audio import Audio

log = logging.getLogger(__name__)

HOP = 160  # samples per feature frame at 16 kHz
# log10 of the clip floor of the power spectrum: what the transform gives for digital silence
_SILENT_LOG = -10.0


def log_mel(extractor: Any, audio: Audio, frames: int) -> np.ndarray:
    """Log-Mel features of ``audio`` padded with silence to ``frames`` (``extractor``: faster-whisper's
    ``FeatureExtractor``).

    The padding is silent *audio*, as in Whisper's reference code, not zeros appended to the normalized
    log-Mel (as faster-whisper does): a zero there reads as a steady noise bed, and on a short utterance in
    a short window the greedy decoder then repeats the sentence until the window ends. Measured on piper
    speech cut at commas (tiny.en, greedy): 5 of 6 clipped clauses looped with zero-padded features, 1 of 6
    with silent audio.
    """
    padded = np.zeros(frames * HOP, dtype=np.float32)
    n = min(audio.size, padded.size)
    padded[:n] = audio[:n]
    mel: np.ndarray = extractor(padded, padding=0)[:, :frames]
    if mel.shape[1] < frames:  # the STFT drops the last partial hop
        mel = np.pad(mel, ((0, 0), (0, frames - mel.shape[1])), mode="edge")
    return mel.astype(np.float32)


def silence_value(mel: np.ndarray) -> float:
    """The normalized log-Mel of a silent frame in features whose loudest value is ``mel.max()``.

    Whisper clips the log power at 1e-10 (log -10), then raises everything to at least 8 below the
    loudest value, then maps x to (x + 4) / 4. So silence is (max(-10, top - 8) + 4) / 4, where top is the
    loudest log power, which is 4 * mel.max() - 4.
    """
    return max(_SILENT_LOG + 4.0, 4.0 * float(mel.max()) - 8.0) / 4.0


def extend(mel: np.ndarray, frames: int) -> np.ndarray:
    """``mel`` (computed with silence padding, see :func:`log_mel`) extended with silent frames to
    ``frames``: equal to :func:`log_mel` of the same audio at ``frames``, to float rounding, because the
    silence added cannot change the loudest value that the normalization reads."""
    if mel.shape[1] >= frames:
        return mel[:, :frames]
    out = np.full((mel.shape[0], frames), silence_value(mel), dtype=np.float32)
    out[:, : mel.shape[1]] = mel
    return out


def pin_blas_threads() -> bool:
    """Limit numpy's BLAS to one thread for the whole process; False if it could not be (no threadpoolctl,
    or a BLAS it does not know): then the model still works, with a thread that competes for a core."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional speed-up, not a requirement to run
        log.warning("threadpoolctl is not installed: numpy's BLAS keeps one thread per core")
        return False
    threadpool_limits(limits=1, user_api="blas")
    return True
