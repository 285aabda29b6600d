"""``python -m streamer_bench.bucket_cost``: what the ASR model costs per length bucket and batch size.

Utterances of real speech (the bench's own, 3 s each) are decoded as the server decodes them
(``WhisperEngine.transcribe_batch``, greedy, features prepared beforehand as the batcher does) in each
length bucket and at each batch size, on one CTranslate2 thread (what one of two model workers has on a
2-core machine). Reported per cell: the median of ``--repeat`` calls in process CPU time (robust on a
loaded machine) and wall time, per call and per second of speech, the padding share of the model input,
and the CPU it ran on (:mod:`streamer_bench.cpu`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from streamer.pipeline.asr import BUCKETS_S, AsrRequest, WhisperEngine
from streamer.pipeline.models import resolve_asr_model
from streamer_bench.cpu import cpu_info, cpu_kind, model_dir
from streamer_bench.decode_cost import speech

SPEECH_S = 3.0


def measure(engine: WhisperEngine, window_s: int, batch: int, repeat: int) -> dict[str, Any]:
    # the speech, then silence to just inside the window: the engine picks the window from the length
    audio = np.zeros(window_s * 16000 - 320, dtype=np.float32)
    audio[: int(SPEECH_S * 16000)] = speech(SPEECH_S) / 32768.0
    request = AsrRequest(audio)
    requests = [engine.prepare(request)] * batch
    engine.transcribe_batch(requests)  # warm-up
    cpu, wall = [], []
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        results = engine.transcribe_batch(requests)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return {
        "window_s": window_s,
        "batch": batch,
        "cpu_s": round(statistics.median(cpu), 4),
        "wall_s": round(statistics.median(wall), 4),
        "cpu_per_speech_s": round(statistics.median(cpu) / (batch * SPEECH_S), 4),
        "padding_share": round(1 - SPEECH_S / window_s, 3),
        "text": results[0].text,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer_bench.bucket_cost", description=__doc__)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", help="write the JSON here")
    args = parser.parse_args(argv)
    engine = WhisperEngine(resolve_asr_model(args.model), device="cpu", threads=1)
    cpu = cpu_info(model_dir(args.model))
    rows = [
        measure(engine, window, int(b), args.repeat)
        for b in args.batches.split(",")
        for window in (*BUCKETS_S[:-1], 30)
    ]
    print(f"{args.model} on {cpu_kind(cpu)}, one CTranslate2 thread, {SPEECH_S:g} s of speech per job")
    print("| batch | window s | padding | CPU s per call | wall s per call | CPU s per speech s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['window_s']} | {r['padding_share']:.0%} | {r['cpu_s']} | {r['wall_s']} "
            f"| {r['cpu_per_speech_s']} |"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpu": cpu, "model": args.model, "speech_s": SPEECH_S, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
