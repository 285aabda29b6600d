"""Voice activity: Silero VAD (the ONNX model shipped inside faster-whisper), streamed per session.

One ONNX session is shared by all streams (onnxruntime sessions are safe to call concurrently); each
stream keeps its own recurrent state and the 64-sample context the model expects before every window.
A 100 ms chunk is scored in one call: the model runs its LSTM over the sequence of 32 ms windows.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import numpy.typing as npt

from streamer.pipeline.audio import Audio

WINDOW = 512  # samples at 16 kHz = 32 ms
CONTEXT = 64

# The energy gate: a chunk whose every window is digital silence, or stays within GATE_MARGIN of the
# stream's own noise floor, is not shown to Silero while nothing speech-like was heard for HANGOVER
# windows. Idle sessions (silence, steady hum or fan noise) then cost a few numpy operations per chunk
# instead of a model call. Speech rises well above a steady floor; babble and music do not stay under
# it, so they are still scored.
SILENCE_RMS = 10 ** (-60 / 20)
GATE_MARGIN = 10 ** (4 / 20)  # 4 dB
FLOOR_RISE = 10 ** (0.5 / 20 / 31)  # the floor estimate may rise 0.5 dB per second
HANGOVER = 31  # ~1 s of windows after the last one that sounded like speech
SPEECH_LIKE = 0.2


class VadModel(Protocol):
    """Scores a sequence of windows; fakes in tests implement the same call."""

    def new_stream(self) -> VadStream: ...


class VadStream(Protocol):
    def probabilities(self, audio: Audio) -> tuple[npt.NDArray[np.float32], list[Audio]]:
        """Feed audio; return the speech probability and the samples of each completed window."""
        ...


def silero_model_path() -> str:
    import faster_whisper

    return os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")


class SileroVad:
    """The shared Silero model. ``new_stream()`` gives each session its own state."""

    def __init__(self, path: str | None = None) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.enable_cpu_mem_arena = False
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            path or silero_model_path(), providers=["CPUExecutionProvider"], sess_options=opts
        )

    def new_stream(self) -> SileroStream:
        return SileroStream(self._session)


class SileroStream:
    """Per-session VAD state: LSTM state, window context and not-yet-complete samples."""

    def __init__(self, session: object) -> None:
        self._session = session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._floor = 1.0  # noise floor estimate (window RMS); starts high and falls to the real one
        self._since_speech = 0  # windows since one scored SPEECH_LIKE (0: must score)
        self.gated_windows = 0  # windows the gate kept from the model (for tests and measurements)

    def probabilities(self, audio: Audio) -> tuple[npt.NDArray[np.float32], list[Audio]]:
        buf = np.concatenate([self._pending, audio]) if self._pending.size else audio
        n = buf.size // WINDOW
        self._pending = buf[n * WINDOW :].copy()
        if n == 0:
            return np.zeros(0, dtype=np.float32), []
        windows = buf[: n * WINDOW].reshape(n, WINDOW)
        if self._gate(windows):
            self.gated_windows += n
            self._context = windows[-1, -CONTEXT:].copy()
            return np.zeros(n, dtype=np.float32), list(windows)
        probs = self._score(windows)
        self._since_speech = 0 if probs.max() >= SPEECH_LIKE else self._since_speech + n
        return probs, list(windows)

    def _gate(self, windows: npt.NDArray[np.float32]) -> bool:
        """True when these windows cannot hold speech the model needs to see."""
        levels = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
        floor = self._floor
        for level in levels.tolist():
            floor = min(floor * FLOOR_RISE, max(level, SILENCE_RMS))
        self._floor = floor
        quiet = bool(np.all(levels <= max(SILENCE_RMS, floor * GATE_MARGIN)))
        return quiet and self._since_speech >= HANGOVER

    def _score(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        n = windows.shape[0]
        contexts = np.empty((n, CONTEXT), dtype=np.float32)
        contexts[0] = self._context
        contexts[1:] = windows[:-1, -CONTEXT:]
        self._context = windows[-1, -CONTEXT:].copy()
        batch = np.concatenate([contexts, windows], axis=1)
        probs, self._h, self._c = self._session.run(  # type: ignore[attr-defined]
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        return np.asarray(probs, dtype=np.float32).reshape(-1)

    def flush(self) -> Audio:
        """Samples that did not fill a whole window (kept for the final utterance's tail)."""
        rest, self._pending = self._pending, np.zeros(0, dtype=np.float32)
        return rest
