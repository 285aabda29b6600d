"""Test audio: the bench's real encoders (PyAV/FFmpeg), G.711 by name, and hostile WAV headers."""

from __future__ import annotations

import struct

import numpy as np

from streamer.pipeline.codecs import Encoding
from streamer_bench.encoders import FORMATS, encode, g711

__all__ = ["FORMATS", "alaw", "encode", "mulaw", "wav_header"]


def mulaw(samples: np.ndarray) -> bytes:
    return g711(samples, Encoding.MULAW)


def alaw(samples: np.ndarray) -> bytes:
    return g711(samples, Encoding.ALAW)


def wav_header(rate: int, channels: int = 1, data_bytes: int = 0xFFFFFFF0) -> bytes:
    """A PCM16 WAV header that claims ``data_bytes`` of samples (a bomb claims far more than it sends)."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes & 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )
