"""What decoding a client's encoding costs: CPU seconds per audio second (``time.process_time``).

``python -m streamer_bench.codec_cost [--seconds 60] [--frame-ms 20]``: a minute of noise at 8 kHz,
encoded to G.711 by the client's encoder, decoded in frames by the server's decoder (``open_decoder``),
and through the whole input stage (``PcmInput.push``: decode, then resample to 16 kHz). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from streamer.client_audio import alaw_encode, mulaw_encode
from streamer.pipeline.audio import PcmInput
from streamer.pipeline.codecs import Encoding, open_decoder

RATE = 8000
REPEATS = 5  # the best of: a shared machine's other work is not the decoder's cost


def _cpu_per_audio_s(run: Callable[[], object], seconds: float) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best / seconds


def measure(seconds: float, frame_ms: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(int(seconds * RATE)) * 3000).clip(-32768, 32767).astype(np.int16)
    step = RATE * frame_ms // 1000
    out: dict[str, float] = {}
    for encoding, encoder in ((Encoding.MULAW, mulaw_encode), (Encoding.ALAW, alaw_encode)):
        data = encoder(pcm)
        frames = [data[i : i + step] for i in range(0, len(data), step)]

        def decode(encoding: Encoding = encoding, frames: list[bytes] = frames) -> None:
            decoder = open_decoder(encoding, RATE)
            for frame in frames:
                decoder.decode(frame)

        def input_stage(encoding: Encoding = encoding, frames: list[bytes] = frames) -> None:
            source = PcmInput(RATE, encoding=encoding)
            for frame in frames:
                source.push(frame)

        out[f"{encoding}_decode_cpu_s_per_audio_s"] = _cpu_per_audio_s(decode, seconds)
        out[f"{encoding}_input_stage_cpu_s_per_audio_s"] = _cpu_per_audio_s(input_stage, seconds)
    pcm_frames = [pcm.tobytes()[i : i + 2 * step] for i in range(0, 2 * pcm.size, 2 * step)]

    def pcm_stage() -> None:
        source = PcmInput(RATE)
        for frame in pcm_frames:
            source.push(frame)

    out["pcm16_input_stage_cpu_s_per_audio_s"] = _cpu_per_audio_s(pcm_stage, seconds)
    return {k: float(f"{v:.3g}") for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--frame-ms", type=int, default=20)
    args = parser.parse_args()
    print(
        json.dumps(
            {"seconds": args.seconds, "frame_ms": args.frame_ms, **measure(args.seconds, args.frame_ms)}
        )
    )


if __name__ == "__main__":
    main()
