"""Where a diarized final's time goes: the diarization step alone, several sessions sharing one worker.

    python -m streamer_bench.diarize_steps [--sessions 1,4,8] [--dialogues DIR] [--speed 1]

No ASR and no server: each session replays one dialogue's utterances as a VAD cuts them
(:func:`streamer_bench.speakers_bench.segment`, ground-truth words), and when an utterance ends (at
``--speed`` times real time) asks its :class:`~streamer.session.diarize.SessionSpeakers` for the final's
parts, as ``session/finals.py`` does, through one real
:class:`~streamer.pipeline.speakers_worker.SpeakerWorker`
shared by every session. Sessions start together (the capacity bench's synchronized starts), each on
the next dialogue of the set. Reported: per final, the wall time of the diarization step and the jobs
it sent the worker; per encoder call, its windows and time; the process CPU time of the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.pipeline.speakers import VoiceKind
from streamer.pipeline.speakers_encoder import RATE
from streamer.pipeline.speakers_worker import EmbedWindows, SpeakerBatch, SpeakerWorker, load_voice_encoder
from streamer.protocol import Word
from streamer.session.diarize import SessionSpeakers
from streamer_bench import dialogue
from streamer_bench.report import machine
from streamer_bench.speaker_turns import best_mapping_accuracy
from streamer_bench.speakers_bench import segment

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "dialogue"


class CountingWorker(SpeakerWorker):
    """A real worker that also counts each session's jobs (the bench's view; the product has no need)."""

    def __init__(self, encoder: tuple[EmbedWindows, VoiceKind], on_batch: Any) -> None:
        super().__init__(encoder[0], on_batch=on_batch, kind=encoder[1])
        self.jobs: dict[str, int] = defaultdict(int)
        self.windows: dict[str, int] = defaultdict(int)

    async def _submit(self, session_id: str, prepare: Callable[[], np.ndarray], n: int) -> np.ndarray:
        # every job goes through here, whichever public method sent it (so older builds count the same)
        self.jobs[session_id] += 1
        self.windows[session_id] += n
        return await super()._submit(session_id, prepare, n)


@dataclass(frozen=True)
class FinalStep:
    session: int
    words: int
    audio_s: float
    wall_s: float
    jobs: int
    windows: int
    parts: int


async def run_session(
    index: int,
    item: dialogue.Item,
    audio: np.ndarray,
    worker: CountingWorker,
    speed: float,
    t0: float,
    out: list[FinalStep],
    pairs: dict[int, list[tuple[int, int]]],
) -> None:
    session_id = f"s{index}"
    speakers = SessionSpeakers(session_id, worker)
    for utt in segment(item, 0.45, np.random.default_rng([7, index])):
        due = t0 + utt.end / RATE / speed
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        start_ms, end_ms = utt.start * 1000 // RATE, utt.end * 1000 // RATE
        words = [
            Word(word=w.text, start_ms=w.start_ms, end_ms=w.end_ms, probability=1.0) for _, w in utt.words
        ]
        text = " ".join(w.word for w in words)
        before, windows = worker.jobs[session_id], worker.windows[session_id]
        started = time.monotonic()
        parts = await speakers.parts(True, audio[utt.start : utt.end], start_ms, end_ms, text, words)
        labels = [p.speaker if p.speaker is not None else -1 for p in parts for _ in p.words or []]
        pairs[index] += [(speaker, label) for (speaker, _), label in zip(utt.words, labels, strict=True)]
        wall = time.monotonic() - started
        out.append(
            FinalStep(
                index,
                len(words),
                (utt.end - utt.start) / RATE,
                wall,
                worker.jobs[session_id] - before,
                worker.windows[session_id] - windows,
                len(parts),
            )
        )


async def run(
    speech: dialogue.Dialogues,
    sessions: int,
    speed: float,
    encoder: tuple[EmbedWindows, VoiceKind],
    kinds: tuple[str, ...],
) -> dict[str, Any]:
    items = [it for it in speech.items if it.kind in kinds]
    batches: list[SpeakerBatch] = []
    steps: list[FinalStep] = []
    pairs: dict[int, list[tuple[int, int]]] = defaultdict(list)
    worker = CountingWorker(encoder, batches.append)
    audios = [speech.audio(it) for it in items]
    cpu0, wall0 = time.process_time(), time.monotonic()
    async with worker:
        t0 = time.monotonic()
        await asyncio.gather(
            *(
                run_session(k, items[k % len(items)], audios[k % len(items)], worker, speed, t0, steps, pairs)
                for k in range(sessions)
            )
        )
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    audio_s = sum(items[k % len(items)].duration_ms / 1000 for k in range(sessions))
    return {
        "sessions": sessions,
        "speed": speed,
        "finals": len(steps),
        "process_cpu_s": cpu,
        "wall_s": wall,
        "audio_s": audio_s,
        "worker_busy_s": worker.busy_s,
        "words": sum(len(p) for p in pairs.values()),
        "words_right": sum(best_mapping_accuracy(p) * len(p) for p in pairs.values()),
        "steps": [asdict(s) for s in steps],
        "batches": [asdict(b) for b in batches],
    }


def quantile(values: list[float], q: float) -> float:
    return float(np.quantile(values, q)) if values else 0.0


def summary(r: dict[str, Any]) -> str:
    walls = [s["wall_s"] for s in r["steps"]]
    jobs = [s["jobs"] for s in r["steps"]]
    by_size: dict[int, list[float]] = defaultdict(list)
    for b in r["batches"]:
        by_size[b["windows"]].append(b["seconds"])
    sizes = ", ".join(
        f"{n}w {len(v)}x {statistics.median(v) * 1000:.0f} ms" for n, v in sorted(by_size.items())
    )
    joint = sum(1 for b in r["batches"] if b["sessions"] > 1)
    return (
        f"sessions {r['sessions']}: {r['finals']} finals, diarization step p50 {quantile(walls, 0.5):.3f} s "
        f"p95 {quantile(walls, 0.95):.3f} s max {max(walls, default=0):.3f} s; jobs per final "
        f"mean {statistics.fmean(jobs) if jobs else 0:.2f} max {max(jobs, default=0)}; "
        f"{len(r['batches'])} encoder calls ({joint} with more than one session), worker busy "
        f"{r['worker_busy_s']:.2f} s; process CPU {r['process_cpu_s']:.2f} s "
        f"= {r['process_cpu_s'] / r['audio_s']:.4f} s per audio s; words right "
        f"{r['words_right'] / max(1, r['words']):.1%} of {r['words']}\n  calls by windows: {sizes}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer_bench.diarize_steps", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--dialogues", type=Path, default=FIXTURES, help="generated dialogues (default: the fixtures)"
    )
    parser.add_argument("--sessions", default="1,4,8", help="comma-separated session counts")
    parser.add_argument("--speed", type=float, default=1.0, help="times real time")
    parser.add_argument(
        "--kinds", default="two,three", help="which items: two, three (dialogues), reading (one voice)"
    )
    parser.add_argument("--encoder", choices=("ge2e", "campplus"), default="ge2e")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    args = parser.parse_args(argv)
    speech = dialogue.load(args.dialogues)
    encoder = load_voice_encoder(args.encoder)
    results = []
    for n in (int(s) for s in args.sessions.split(",")):
        r = asyncio.run(run(speech, n, args.speed, encoder, tuple(args.kinds.split(","))))
        print(summary(r), flush=True)
        results.append(r)
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "runs": results}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
