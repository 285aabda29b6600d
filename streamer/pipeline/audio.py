"""PCM validation and streaming resampling to the model rate (16 kHz)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from streamer.errors import FrameTooLargeError, InvalidAudioError

MODEL_RATE = 16000

Audio = npt.NDArray[np.float32]


def max_frame_bytes(sample_rate: int, max_frame_ms: int) -> int:
    """The largest binary frame a session may send: ``max_frame_ms`` of 16-bit mono audio."""
    return sample_rate * max_frame_ms // 1000 * 2


class PcmInput:
    """Turns binary frames (s16le mono at ``sample_rate``) into float32 audio at 16 kHz.

    Validation happens before anything is buffered, so a bad frame never corrupts the stream. The
    resampler is a streaming soxr instance: chunk boundaries leave no clicks and no gaps.
    """

    def __init__(self, sample_rate: int, *, min_frame_ms: int = 10, max_frame_ms: int = 1000) -> None:
        self.sample_rate = sample_rate
        self.min_frame_bytes = sample_rate * min_frame_ms // 1000 * 2
        self.max_frame_bytes = max_frame_bytes(sample_rate, max_frame_ms)
        self._resampler = (
            None
            if sample_rate == MODEL_RATE
            else soxr.ResampleStream(sample_rate, MODEL_RATE, 1, dtype="float32", quality="HQ")
        )
        self.samples_in = 0

    def validate(self, frame: bytes) -> None:
        """Raise the contract's error for a frame that is not acceptable PCM."""
        if len(frame) > self.max_frame_bytes:
            raise FrameTooLargeError(
                f"audio frame of {len(frame)} bytes exceeds the limit of {self.max_frame_bytes} bytes"
            )
        if len(frame) % 2:
            raise InvalidAudioError("audio frame has an odd number of bytes; expected 16-bit samples")
        if len(frame) < self.min_frame_bytes:
            raise InvalidAudioError(
                f"audio frame of {len(frame)} bytes is shorter than the minimum of {self.min_frame_bytes}"
            )

    def push(self, frame: bytes) -> Audio:
        """Validate and convert one frame; returns the 16 kHz samples it yields (maybe none yet)."""
        self.validate(frame)
        pcm = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        self.samples_in += pcm.size
        if self._resampler is None:
            return pcm
        out: Audio = self._resampler.resample_chunk(pcm)
        return out

    def flush(self) -> Audio:
        """The resampler's tail at end of stream (or before a rate change)."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        out: Audio = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return out

    @property
    def audio_ms(self) -> int:
        """Audio received so far, in milliseconds at the input rate."""
        return self.samples_in * 1000 // self.sample_rate
