"""Test audio: the bench's real encoders (PyAV/FFmpeg), G.711 by name, and hostile WAV headers."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import av
import av.audio.stream
import numpy as np

from streamer.pipeline.codecs import Encoding
from streamer_bench.encoders import FORMATS, encode, g711

__all__ = ["FORMATS", "alaw", "encode", "m4a", "mulaw", "wav_header"]


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


def m4a(samples: np.ndarray, rate: int, *, faststart: bool) -> bytes:
    """Mono AAC in MP4: the index (moov) first with ``faststart``, else after the media, as FFmpeg
    writes by default (the second pass that moves it needs a file, not a buffer)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audio.m4a"
        options = {"movflags": "+faststart"} if faststart else {}
        with av.open(str(path), "w", format="mp4", options=options) as file:
            stream = file.add_stream("aac", rate=rate, layout="mono")
            assert isinstance(stream, av.audio.stream.AudioStream)
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.rate = rate
            sample_format = stream.codec_context.format.name if stream.codec_context.format else "fltp"
            resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
            for piece in [*resampler.resample(frame), *resampler.resample(None), None]:
                for packet in stream.encode(piece):
                    file.mux(packet)
        return path.read_bytes()
