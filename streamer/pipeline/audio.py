"""A session's audio input: decoding, validation and streaming resampling to the model rate (16 kHz)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from streamer.errors import FrameTooLargeError, InvalidAudioError
from streamer.pipeline.codecs import SAMPLE_BYTES, Encoding, open_decoder
from streamer.protocol import MAX_SAMPLE_RATE

MODEL_RATE = 16000

Audio = npt.NDArray[np.float32]


def sample_bytes(encoding: Encoding) -> int:
    """Bytes one sample takes on the wire; for a container, in the PCM16 it is decoded to."""
    return SAMPLE_BYTES.get(encoding, 2)


def max_frame_bytes(sample_rate: int, max_frame_ms: int, encoding: Encoding = Encoding.PCM16) -> int:
    """The largest binary frame a session may send: ``max_frame_ms`` of mono audio in ``encoding``.

    A container's message may hold as many bytes as ``max_frame_ms`` of 48 kHz PCM16, whatever the
    session's rate: a WAV chunk at its own rate fits, and compressed audio (MediaRecorder's 250 ms
    chunks are a few KiB) far more. What a container costs is paced in decoded seconds, not bytes.
    """
    if encoding.contained:
        sample_rate = MAX_SAMPLE_RATE
    return sample_rate * max_frame_ms // 1000 * sample_bytes(encoding)


def pieces(pcm: bytes, max_bytes: int) -> list[bytes]:
    """Decoded PCM16 cut into pieces of whole samples, each at most ``max_bytes`` (a frame's limit)."""
    step = max_bytes - max_bytes % 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


class PcmInput:
    """Turns binary frames (``encoding``, mono, at ``sample_rate``) into float32 audio at 16 kHz.

    With a container encoding the frames pushed are the container's audio already decoded to PCM16 at
    ``sample_rate`` (``streamer.pipeline.container_input``), and ``max_frame_bytes`` bounds the
    container's messages.

    Framing is the client's business: a frame holds any whole number of samples, from one up to
    ``max_frame_ms`` of audio (for PCM16 an odd byte count is the one framing error). Small frames cost
    little here: the VAD collects samples into its windows, so nothing is dropped and nothing is padded.
    Validation happens before anything is buffered, so a bad frame never corrupts the stream. The
    resampler is a streaming soxr instance: chunk boundaries leave no clicks and no gaps.
    """

    def __init__(
        self, sample_rate: int, *, max_frame_ms: int = 1000, encoding: Encoding = Encoding.PCM16
    ) -> None:
        self.sample_rate = sample_rate
        self.encoding = encoding
        self.sample_bytes = sample_bytes(encoding)
        self.max_frame_bytes = max_frame_bytes(sample_rate, max_frame_ms, encoding)
        self._decoder = open_decoder(Encoding.PCM16 if encoding.contained else encoding, sample_rate)
        self._resampler = (
            None
            if sample_rate == MODEL_RATE
            else soxr.ResampleStream(sample_rate, MODEL_RATE, 1, dtype="float32", quality="HQ")
        )
        self.samples_in = 0

    def validate(self, frame: bytes) -> None:
        """Raise the contract's error for a frame that is not acceptable audio."""
        if len(frame) > self.max_frame_bytes:
            raise FrameTooLargeError(
                f"audio frame of {len(frame)} bytes exceeds the limit of {self.max_frame_bytes} bytes"
            )
        if len(frame) % self.sample_bytes and not self.encoding.contained:  # container bytes: any count
            raise InvalidAudioError(
                f"audio frame of {len(frame)} bytes is not a whole number of {self.encoding} samples "
                f"({self.sample_bytes} bytes each)"
            )

    def seconds(self, frame: bytes) -> float:
        """How much audio ``frame`` holds (what pacing, quotas and metrics count)."""
        return len(frame) / self.sample_bytes / self.sample_rate

    def push(self, frame: bytes) -> Audio:
        """Validate, decode and convert one frame; returns the 16 kHz samples it yields (maybe none yet)."""
        self.validate(frame)
        pcm16 = self._decoder.decode(frame)
        pcm = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
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
