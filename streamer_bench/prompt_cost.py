"""``python -m streamer_bench.prompt_cost``: what a Whisper prompt costs one batched model call.

A batch of ``--batch`` of the bench's utterances is transcribed by the real model (``--model``, tiny.en
by default), once without prompts and once with a prompt of about ``--prompt-tokens`` tokens on every
item (prompts of one length share the call: CTranslate2 needs the start of transcript at one position),
once with prompts of different lengths on every item (one call per length), and once asking every item's
token log-probabilities (the decode returns its logits). Reported: the process
CPU time (every thread) and wall time of ``transcribe_batch``, the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import time
from collections.abc import Callable

import numpy as np

from streamer.app import load_asr_engine
from streamer.config import Settings
from streamer.pipeline.asr import AsrEngine, AsrRequest
from streamer_bench.decode_cost import speech

WORDS = [
    "we",
    "talked",
    "about",
    "the",
    "weather",
    "the",
    "match",
    "on",
    "saturday",
    "and",
    "the",
    "new",
    "library",
    "near",
    "the",
    "station",
]


def _utterances(count: int) -> list[np.ndarray]:
    """``count`` utterances of 2-4 s from the bench's speech, as float samples."""
    audio = speech(4.0 * count).astype(np.float32) / 32768
    bounds = np.linspace(0, audio.size, count + 1).astype(int)
    return [audio[a:b] for a, b in itertools.pairwise(bounds)]


def _prompt(words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


def _timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(repeat):
        started_cpu, started = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return statistics.median(cpu), statistics.median(wall)


def measure(engine: AsrEngine, batch: int, prompt_tokens: int, repeat: int) -> dict[str, tuple[float, float]]:
    audio = _utterances(batch)
    words = max(1, prompt_tokens * 3 // 4)  # about 4 tokens per 3 English words
    cases = {
        "no prompt": [AsrRequest(a) for a in audio],
        "same-length prompts": [AsrRequest(a, prompt=_prompt(words)) for a in audio],
        "different lengths": [AsrRequest(a, prompt=_prompt(words + i)) for i, a in enumerate(audio)],
        "logprobs": [AsrRequest(a, logprobs=True) for a in audio],
    }
    engine.transcribe_batch(cases["no prompt"])  # warm up
    return {
        name: _timed(functools.partial(engine.transcribe_batch, requests), repeat)
        for name, requests in cases.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--prompt-tokens", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    engine = load_asr_engine(Settings(asr_model=args.model, device="cpu"))
    for batch in args.batch:
        results = measure(engine, batch, args.prompt_tokens, args.repeat)
        base_cpu = results["no prompt"][0]
        for name, (cpu, wall) in results.items():
            print(
                f"batch {batch}  {name:20s} cpu {cpu * 1000:7.0f} ms  wall {wall * 1000:7.0f} ms"
                f"  cpu x{cpu / base_cpu:.2f}"
            )


if __name__ == "__main__":
    main()
