"""Real encoders for bench and test audio: PyAV (FFmpeg) writes each container as a client's recorder
would, and G.711 is the decoder's own table inverted."""

from __future__ import annotations

import io
from typing import Any

import av
import av.audio.stream
import numpy as np

from streamer.pipeline.codecs import ALAW_TO_PCM, MULAW_TO_PCM, Encoding

# container -> (PyAV format, codec, encoder's rate or None for the input's)
FORMATS = {
    "wav": ("wav", "pcm_s16le", None),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "flac": ("flac", "flac", None),
    "mp3": ("mp3", "libmp3lame", None),
    "aac": ("adts", "aac", None),
}


# WebM as a browser's MediaRecorder writes it: a live stream (sizes unknown, no cues), short clusters
LIVE_OPTIONS = {"webm": {"live": "1", "cluster_time_limit": "250"}}


class _Sink(io.RawIOBase):
    """A write-only, unseekable output: the muxer writes the stream as it would to a socket."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:  # (a bytes-like object)
        chunk = bytes(b)
        self.data += chunk
        return len(chunk)


def encode(samples: np.ndarray, rate: int, container: str, options: dict[str, str] | None = None) -> bytes:
    """Interleaved s16 ``samples`` (shape (n,) or (n, channels)) at ``rate`` in ``container``; ``options``
    are the muxer's (default: :data:`LIVE_OPTIONS`' for the container)."""
    fmt, codec, codec_rate = FORMATS[container]
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    sink, buffer = _Sink(), io.BytesIO()
    out = sink if container in LIVE_OPTIONS else buffer
    muxer = LIVE_OPTIONS.get(container, {}) if options is None else options
    with av.open(out, "w", format=fmt, options=muxer) as file:
        stream = file.add_stream(codec, rate=codec_rate or rate, layout=layout)
        assert isinstance(stream, av.audio.stream.AudioStream)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples.reshape(1, -1)), format="s16", layout=layout
        )
        frame.rate = rate
        sample_format = stream.codec_context.format.name if stream.codec_context.format else "s16"
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=codec_rate or rate)
        packets = [
            p for f in [*resampler.resample(frame), *resampler.resample(None)] for p in stream.encode(f)
        ]
        for packet in [*packets, *stream.encode(None)]:
            file.mux(packet)
    return bytes(sink.data) if out is sink else buffer.getvalue()


def g711(samples: np.ndarray, encoding: Encoding) -> bytes:
    """s16 ``samples`` as G.711 bytes: each sample's nearest code in the decoder's own table."""
    table = MULAW_TO_PCM if encoding is Encoding.MULAW else ALAW_TO_PCM
    order = np.argsort(table)
    ranked = table[order].astype(np.int32)
    at = np.clip(np.searchsorted(ranked, samples.astype(np.int32)), 1, len(ranked) - 1)
    nearer = np.where(np.abs(ranked[at] - samples) < np.abs(ranked[at - 1] - samples), at, at - 1)
    return order[nearer].astype(np.uint8).tobytes()
