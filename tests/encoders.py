"""Real encoders for test audio: PyAV (FFmpeg) writes each container as a client's recorder would."""

from __future__ import annotations

import io
import struct

import av
import numpy as np

from streamer.pipeline.codecs import ALAW_TO_PCM, MULAW_TO_PCM

# container -> (PyAV format, codec, encoder's rate or None for the input's)
FORMATS = {
    "wav": ("wav", "pcm_s16le", None),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "flac": ("flac", "flac", None),
    "mp3": ("mp3", "libmp3lame", None),
}


def encode(samples: np.ndarray, rate: int, container: str) -> bytes:
    """Interleaved s16 ``samples`` (shape (n,) or (n, channels)) at ``rate`` in ``container``."""
    fmt, codec, codec_rate = FORMATS[container]
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as file:
        stream = file.add_stream(codec, rate=codec_rate or rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples.reshape(1, -1)), format="s16", layout=layout
        )
        frame.rate = rate
        sample_format = stream.codec_context.format.name
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=codec_rate or rate)
        packets = [
            p for f in [*resampler.resample(frame), *resampler.resample(None)] for p in stream.encode(f)
        ]
        for packet in [*packets, *stream.encode(None)]:
            file.mux(packet)
    return out.getvalue()


def g711(samples: np.ndarray, table: np.ndarray) -> bytes:
    """s16 ``samples`` as G.711 bytes: each sample's nearest code in the decoder's own table."""
    order = np.argsort(table)
    ranked = table[order].astype(np.int32)
    at = np.clip(np.searchsorted(ranked, samples.astype(np.int32)), 1, len(ranked) - 1)
    nearer = np.where(np.abs(ranked[at] - samples) < np.abs(ranked[at - 1] - samples), at, at - 1)
    return order[nearer].astype(np.uint8).tobytes()


def mulaw(samples: np.ndarray) -> bytes:
    return g711(samples, MULAW_TO_PCM)


def alaw(samples: np.ndarray) -> bytes:
    return g711(samples, ALAW_TO_PCM)


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
