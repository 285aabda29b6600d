"""``python -m streamer_bench.decode_cost``: the CPU one Deepgram live stream's decoding costs, per codec.

About 60 s of speech (the bench's own utterances, repeated) is encoded by FFmpeg (PyAV) in each container a
client sends, then fed to the server's streaming decoder (``streamer.pipeline.streaming``: the same
thread, bounded buffers and resampling to 16 kHz as a live stream) in 250 ms pieces, as MediaRecorder
sends them; G.711 goes through its table decoder. Reported: process CPU time (every thread) per audio
second, and how many such streams one core could decode. Each codec is measured ``--repeat`` times and the
median kept. Encoding is not timed.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import wave
from importlib import resources

import numpy as np

from streamer.pipeline.codecs import Encoding, open_decoder
from streamer.pipeline.streaming import ContainerDecoder
from streamer_bench.encoders import encode, g711

RATE = 16000


def speech(seconds: float) -> np.ndarray:
    """``seconds`` of the bench's utterances, one after another."""
    parts = []
    for name in ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav"):
        data = resources.files("streamer_bench").joinpath("data", name).read_bytes()
        with wave.open(io.BytesIO(data), "rb") as w:
            assert w.getframerate() == RATE and w.getnchannels() == 1
            parts.append(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"))
    one = np.concatenate(parts)
    return np.tile(one, int(np.ceil(seconds * RATE / one.size)))[: int(seconds * RATE)]


def _container_cpu(data: bytes, audio_s: float) -> float:
    step = max(1, int(len(data) * 0.25 / audio_s))
    decoder = ContainerDecoder(RATE)
    started = time.process_time()
    out = 0
    for i in range(0, len(data), step):
        got = decoder.decode(data[i : i + step])
        while got:
            out += len(got)
            got = decoder.decode(b"")
    while got := decoder.flush():
        out += len(got)
    spent = time.process_time() - started
    assert abs(out / 2 / RATE - audio_s) < 0.5, (out, audio_s)
    return spent


def _g711_cpu(data: bytes, encoding: Encoding) -> float:
    decoder = open_decoder(encoding, 8000)
    started = time.process_time()
    for i in range(0, len(data), 2000):
        decoder.decode(data[i : i + 2000])
    return time.process_time() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    audio = speech(args.seconds)
    narrow = audio[::2]  # 8 kHz for G.711 (the bench's speech has little above 4 kHz; not scored)
    rows = []
    for name in ("wav", "ogg", "webm", "flac", "mp3"):
        data = encode(audio, RATE, name)
        spent = statistics.median(_container_cpu(data, args.seconds) for _ in range(args.repeat))
        rows.append((name, len(data), spent))
    for encoding in (Encoding.MULAW, Encoding.ALAW):
        data = g711(narrow, encoding)
        spent = statistics.median(_g711_cpu(data, encoding) for _ in range(args.repeat))
        rows.append((f"{encoding.value} 8 kHz", len(data), spent))
    print(f"{args.seconds:.0f} s of speech, median of {args.repeat}; Python {sys.version.split()[0]}")
    print("| input | bytes | CPU ms per audio s | streams per core |")
    print("|---|---:|---:|---:|")
    for name, size, spent in rows:
        per_s = spent / args.seconds
        print(f"| {name} | {size:,} | {per_s * 1000:.2f} | {1 / per_s:,.0f} |")


if __name__ == "__main__":
    main()
