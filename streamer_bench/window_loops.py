"""``python -m streamer_bench.window_loops``: what shorter model windows would save, and what they break.

Whisper was trained on 30 s windows; the server pads each decode to a length bucket (5, 10, 15, 20 s, then
30 s: ``streamer.pipeline.asr.BUCKETS_S``), so a 1.5 s partial is decoded in 5 s, most of it silence (the
bench's "padding share"). This tool decodes what a session decodes, each sentence of the corpus as its
partials see it (every 0.5 s from 1 s on) and as its final (the whole sentence and 0.3 s after), one job
per call on one CTranslate2 thread, under window policies:

- ``buckets``: the server's buckets;
- ``tight:M``: the audio plus ``M`` seconds, rounded up to a whole second, at least 2 s;
- ``atleast5:M``: the same, but never under 5 s (only long utterances get a tighter window).

Reported per policy: decodes the server would reject (``hallucination.rejection_reason``: mostly the
sentence written twice), process CPU per decode, and the padding share. The policy is applied by swapping
the engine's window function for the run (a counterfactual, never the server's code path).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from streamer.pipeline import asr
from streamer.pipeline.asr import AsrRequest, WhisperEngine
from streamer.pipeline.hallucination import rejection_reason
from streamer.pipeline.models import resolve_asr_model
from streamer_bench.cpu import cpu_info, cpu_kind, model_dir
from streamer_bench.wer import edits, words

RATE = 16000
PARTIAL_EVERY_S = 0.5
FIRST_PARTIAL_S = 1.0
LEAD_S, TAIL_S = 0.1, 0.3


def policy_frames(policy: str) -> Callable[[int, bool], int]:
    """The window (feature frames) a policy gives audio of ``n`` samples (same shape as
    ``asr.bucket_frames``: the second argument False means the full window, as for the fallback)."""
    if policy == "buckets":
        return asr.bucket_frames
    name, _, margin_text = policy.partition(":")
    if name not in ("tight", "atleast5") or not margin_text:
        raise ValueError(f"unknown window policy {policy!r}: buckets, tight:M or atleast5:M")
    margin, floor = float(margin_text), (2.0 if name == "tight" else 5.0)

    def frames(n: int, pad: bool) -> int:
        if not pad:
            return asr.FULL_WINDOW_FRAMES
        seconds = max(floor, math.ceil(n / RATE + margin))
        return min(asr.FULL_WINDOW_FRAMES, int(seconds * asr.FRAMES_PER_S))

    return frames


@contextlib.contextmanager
def windows(policy: str) -> Iterator[None]:
    """Decode in ``policy``'s windows inside the block."""
    original = asr.bucket_frames
    asr.bucket_frames = policy_frames(policy)  # type: ignore[assignment]  # the counterfactual, for the block
    try:
        yield
    finally:
        asr.bucket_frames = original


def sentences(corpus: Path, conditions: set[str]) -> list[tuple[str, np.ndarray]]:
    """(text, audio from just before the sentence to ``TAIL_S`` after it) of the corpus's conditions."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    out = []
    for item in manifest["items"]:
        if item["condition"] not in conditions or item["sample_rate"] != RATE:
            continue
        with wave.open(str(corpus / item["file"])) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        audio = pcm.astype(np.float32) / 32768.0
        for s in item["sentences"]:
            a = max(0, int((s["start_ms"] / 1000 - LEAD_S) * RATE))
            b = int((s["end_ms"] / 1000 + TAIL_S) * RATE)
            out.append((s["text"], audio[a:b]))
    return out


def measure(engine: WhisperEngine, corpus: list[tuple[str, np.ndarray]], policy: str) -> dict[str, Any]:
    partial_cpu: list[float] = []
    final_cpu: list[float] = []
    rejected = {"partial": 0, "final": 0}
    window_s = audio_s = 0.0
    errors = reference = 0
    with windows(policy):
        for text, audio in corpus:
            ends = [
                int(t * RATE) for t in np.arange(FIRST_PARTIAL_S, audio.size / RATE - TAIL_S, PARTIAL_EVERY_S)
            ]
            for kind, n in [*(("partial", e) for e in ends), ("final", audio.size)]:
                request = engine.prepare(AsrRequest(audio[:n]))
                started = time.process_time()
                result = engine.transcribe_batch([request])[0]
                (partial_cpu if kind == "partial" else final_cpu).append(time.process_time() - started)
                rejected[kind] += rejection_reason(result, audio[:n]) is not None
                window_s += result.window_s
                audio_s += n / RATE
                if kind == "final":
                    errors += edits(words(text), words(result.text))
                    reference += len(words(text))
    return {
        "policy": policy,
        "partials": len(partial_cpu),
        "partials_rejected": rejected["partial"],
        "finals": len(final_cpu),
        "finals_rejected": rejected["final"],
        "final_wer_first_decode": round(errors / max(1, reference), 4),
        "cpu_ms_per_partial": round(1000 * statistics.mean(partial_cpu), 1),
        "cpu_ms_per_final": round(1000 * statistics.mean(final_cpu), 1),
        "padding_share": round(1 - audio_s / window_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer_bench.window_loops", description=__doc__)
    parser.add_argument("--corpus", type=Path, help="a corpus directory (default: generated and cached)")
    parser.add_argument("--conditions", default="clean,fast,snr10")
    parser.add_argument("--policies", default="buckets,tight:1,tight:0.5,atleast5:1")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--out", help="write the JSON here")
    args = parser.parse_args(argv)
    for policy in args.policies.split(","):
        policy_frames(policy)  # an unknown policy fails before the model loads
    if args.corpus is None:
        from streamer_bench import corpus as corpus_mod

        root = corpus_mod.ensure(corpus_mod.CorpusParams()).root  # generated with piper, cached
    else:
        root = args.corpus
    corpus = sentences(root, set(args.conditions.split(",")))
    engine = WhisperEngine(resolve_asr_model(args.model), device="cpu", threads=1)
    cpu = cpu_info(model_dir(args.model))
    rows = [measure(engine, corpus, policy) for policy in args.policies.split(",")]
    print(f"{args.model} on {cpu_kind(cpu)}, one thread, {len(corpus)} sentences ({args.conditions})")
    print(
        "| policy | partials rejected | CPU ms / partial | finals rejected | CPU ms / final | padding share |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['policy']} | {r['partials_rejected']} / {r['partials']} | {r['cpu_ms_per_partial']} "
            f"| {r['finals_rejected']} / {r['finals']} | {r['cpu_ms_per_final']} | {r['padding_share']:.0%} |"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {"cpu": cpu, "model": args.model, "conditions": args.conditions, "rows": rows}, f, indent=1
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
