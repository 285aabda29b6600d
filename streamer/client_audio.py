"""The client's side of a session's ``encoding``: PCM16 encoded to G.711 before it is sent, and how long
a container a client sends as it is lasts.

The server decodes (``streamer.pipeline.codecs``); a client encodes, so the encoders live with the
client. Each is the ITU-T G.711 rule, computed for every sample at once: the segment (exponent) that
holds the sample's magnitude, and the step within it (truncated, as G.711 quantizes; the decoder answers
the step's middle).
"""

from __future__ import annotations

import io
import wave

import av
import numpy as np
import numpy.typing as npt

ENCODINGS = ("pcm16", "mulaw", "alaw")
# a recording's bytes sent as they are (docs/protocol.md, Containers); the server decodes them
CONTAINERS = ("webm", "ogg", "wav", "mp3", "flac", "container")

Pcm16 = npt.NDArray[np.int16]


def _exponent(magnitude: npt.NDArray[np.int32], low: int) -> npt.NDArray[np.int32]:
    """The G.711 segment of each magnitude: 0 below ``2**(low + 1)``, one more per doubling, at most 7."""
    top_bit = np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32)
    return np.clip(top_bit - low, 0, 7)


def mulaw_encode(samples: Pcm16) -> bytes:
    """PCM16 samples as G.711 μ-law bytes."""
    s = np.asarray(samples, dtype=np.int32)
    sign = np.where(s < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(s), 32635) + 0x84  # the bias makes every segment start at a power of 2
    exponent = _exponent(magnitude, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes: npt.NDArray[np.int32] = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return codes.astype(np.uint8).tobytes()


def alaw_encode(samples: Pcm16) -> bytes:
    """PCM16 samples as G.711 A-law bytes."""
    s = np.asarray(samples, dtype=np.int32)
    sign = np.where(s >= 0, 0x80, 0)
    magnitude = np.minimum(np.abs(s), 32767)
    exponent = _exponent(magnitude, 7)  # segment 0 holds magnitudes below 256, linearly
    mantissa = (magnitude >> np.where(exponent == 0, 4, exponent + 3)) & 0x0F
    codes: npt.NDArray[np.int32] = (sign | (exponent << 4) | mantissa) ^ 0x55
    return codes.astype(np.uint8).tobytes()


def encode(pcm: bytes, encoding: str) -> bytes:
    """PCM16 little-endian bytes in ``encoding`` (one of :data:`ENCODINGS`)."""
    if encoding == "pcm16":
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    if encoding == "mulaw":
        return mulaw_encode(samples)
    if encoding == "alaw":
        return alaw_encode(samples)
    raise ValueError(f"unknown encoding {encoding!r}: one of {', '.join(ENCODINGS)}")


def sample_bytes(encoding: str) -> int:
    """Bytes a sample takes in ``encoding``."""
    return 2 if encoding == "pcm16" else 1


def container_seconds(data: bytes) -> float:
    """How long the audio in a container file is (decoded to count: a live WebM states no duration)."""
    samples = 0.0
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            samples += frame.samples / frame.sample_rate
    return samples


def read_wav(path: str) -> tuple[bytes, int]:
    """PCM16 mono bytes and the sample rate of a 16-bit WAV file (stereo is mixed down)."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAV is supported")
        rate, channels = w.getframerate(), w.getnchannels()
        data = w.readframes(w.getnframes())
    if channels > 1:
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels).mean(axis=1)
        data = samples.astype("<i2").tobytes()
    return data, rate
