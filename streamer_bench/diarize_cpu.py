"""Diarized sessions on a real server: their CPU, and their speakers and turns on a whole dialogue set.

    python -m streamer_bench.diarize_cpu [--wav tests/fixtures/dialogue/two0_joe_alpha.wav] [--rounds 2]
    python -m streamer_bench.diarize_cpu --set heldout [--sessions 4] [--out FILE]
    streamer bench --speakers --server --set heldout --sessions 4          # the same, from the CLI

The server runs in this process (tiny.en, Silero, the speaker worker); each run streams a whole file
through protocol v1 (no partials, 20x real time). With ``--wav``, in one of three configs, alternating
by round: plain, ``word_timestamps`` (what diarization implies), ``diarize``. It reports the process CPU
seconds per run (``time.process_time``: every thread, the client's share included, the same in each
config) and the speaker worker's busy seconds, per second of audio.

With ``--set`` (``heldout``: the dialogues no threshold was chosen on, ``heldout-trios`` four more
three-speaker ones; ``tuning``: those they were chosen on), every two- and three-speaker dialogue of the
set is streamed by ``--sessions`` sessions at once (each at 20/N times real time), first with
``word_timestamps``, then with ``diarize`` (the speaker worker batches the sessions' embeddings); each
diarized session's finals are scored by :mod:`streamer_bench.speaker_turns` (words with the right
speaker, turns of 1 s or more merged into another speaker's final, finals holding two speakers). The
CPU columns are each run's process CPU per second of audio and session; their difference is what
diarization adds to a session. ``--encoder campplus`` measures CAM++ instead of GE2E.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import socket
import statistics
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer_bench import dialogue, speaker_turns
from streamer_bench.report import machine

if TYPE_CHECKING:
    from streamer.pipeline.speakers_worker import SpeakerWorker

BENCH_KEY = "bench-key-0123456789abcdef0123456789abcdef"
DEFAULT_WAV = (
    Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "dialogue" / "two0_joe_alpha.wav"
)
CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "word_timestamps": {"word_timestamps": True},
    "diarize": {"diarize": True},
}
CHUNK = 3200  # 100 ms of 16 kHz PCM16


async def _run(url: str, pcm: bytes, extra: dict[str, Any], speed: float = 20.0) -> list[dict[str, Any]]:
    from streamer.client import StreamerClient

    async with StreamerClient(url, api_key=BENCH_KEY) as client:
        stream = await client.connect({"language": "en", "interim_results": False, **extra})
        for i in range(0, len(pcm), CHUNK):
            await stream.ws.send_bytes(pcm[i : i + CHUNK])
            await asyncio.sleep(0.1 / speed)
        await stream.close_session()
        finals = []
        async with asyncio.timeout(300):
            while (event := await stream.receive()) is not None:
                if event.get("type") == "transcript.final" and not event.get("dropped"):
                    finals.append(event)
    return finals


Run = tuple[float, float, list[dict[str, Any]]]


def words_right(wav: Path, finals: list[dict[str, Any]]) -> float | None:
    """The share of the finals' words whose speaker is the dialogue's (manifest.json beside the file),
    under the best one-to-one mapping of labels; None without a manifest."""
    manifest = wav.parent / "manifest.json"
    if not manifest.is_file():
        return None
    items = json.loads(manifest.read_text())["items"]
    item = next((i for i in items if i["file"] == wav.name), None)
    if item is None:
        return None
    turns = item["turns"]

    def truth(ms: float) -> int:
        inside = [t for t in turns if t["start_ms"] <= ms <= t["end_ms"]]
        near = inside or [min(turns, key=lambda t: min(abs(t["start_ms"] - ms), abs(t["end_ms"] - ms)))]
        return int(near[-1]["speaker"])

    pairs = [
        (truth((w["start_ms"] + w["end_ms"]) / 2), w.get("speaker", -1)) for f in finals for w in f["words"]
    ]
    if not pairs:
        return None
    truths, preds = sorted({t for t, _ in pairs}), sorted({p for _, p in pairs})
    best = max(
        sum(pairs.count((t, p)) for t, p in zip(truths, perm, strict=False))
        for perm in itertools.permutations(preds, min(len(preds), len(truths)))
    )
    return best / len(pairs)


@contextlib.asynccontextmanager
async def _server(encoder: str = "ge2e") -> AsyncIterator[tuple[str, SpeakerWorker]]:
    """A real server in this process, on a free port: its URL and its speaker worker."""
    from aiohttp import web

    from streamer.app import create_app
    from streamer.config import Settings
    from streamer.edge.handshake import SERVICES

    settings = Settings(
        api_keys=(BENCH_KEY,),
        device="cpu",
        max_realtime_factor=40.0,
        realtime_burst_s=60.0,
        max_sessions=256,
        saturation_latency_s=1000.0,  # measure under load, do not refuse
        drain_timeout_s=600.0,  # every final of a session streamed at 20x is counted, however busy the CPU
        log_level="WARNING",
        speaker_encoder=encoder,
    )
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        worker = app[SERVICES].speakers
        if worker is None:
            raise SystemExit("no speaker encoder: run scripts/setup.sh (or set STREAMER_SPEAKER_WEIGHTS)")
        yield url, worker
    finally:
        await runner.cleanup()
        sock.close()


def _pcm(wav: Path) -> bytes:
    with wave.open(str(wav), "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise SystemExit(f"{wav}: expected 16 kHz mono PCM16")
        return w.readframes(w.getnframes())


async def measure(wav: Path, rounds: int, encoder: str = "ge2e") -> dict[str, list[Run]]:
    pcm = _pcm(wav)
    out: dict[str, list[Run]] = {name: [] for name in CONFIGS}
    async with _server(encoder) as (url, worker):
        await _run(url, pcm[: 16000 * 2 * 3], {})  # warm the models
        for _ in range(rounds):
            for name, extra in CONFIGS.items():
                cpu, busy = time.process_time(), worker.busy_s
                finals = await _run(url, pcm, extra)
                out[name].append((time.process_time() - cpu, worker.busy_s - busy, finals))
    return out


async def measure_set(
    speech: dialogue.Dialogues, sessions: int, limit: int | None = None, encoder: str = "ge2e"
) -> list[dict[str, Any]]:
    """Every dialogue of ``speech`` (the first ``limit``) by ``sessions`` sessions at once, with word
    timings then diarized."""
    rows = []
    dialogues = [it for it in speech.items if it.kind in ("two", "three")][:limit]
    async with _server(encoder) as (url, worker):
        await _run(url, _pcm(speech.root / speech.items[0].file)[: 16000 * 2 * 3], {})  # warm the models
        for item in dialogues:
            pcm = _pcm(speech.root / item.file)
            row: dict[str, Any] = {"item": item.id, "kind": item.kind, "audio_s": item.duration_ms / 1000}
            row["encoder"] = worker.kind.name
            for name in ("word_timestamps", "diarize"):
                cpu, busy = time.process_time(), worker.busy_s
                # 20x real time in all, as one session alone is sent
                speed = 20.0 / sessions
                runs = await asyncio.gather(*(_run(url, pcm, CONFIGS[name], speed) for _ in range(sessions)))
                row[f"{name}_cpu_s"] = time.process_time() - cpu
                row[f"{name}_worker_s"] = worker.busy_s - busy
            row["scores"] = [speaker_turns.score(item.turns, finals).as_dict() for finals in runs]
            rows.append(row)
            print(f"{item.id}: {[round(s['right'], 3) for s in row['scores']]}", flush=True)
    return rows


def set_summary(rows: list[dict[str, Any]], sessions: int) -> str:
    """One line per kind (two, three): words right, merged turns, mixed finals, CPU per session."""
    lines = [
        "| kind | items | words | words with the right speaker | turns >= 1 s merged (lenient) "
        "| finals with two speakers (lenient) / finals | diarize CPU s per audio s per session "
        "| word timings alone | speaker worker |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("two", "three"):
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        scores = [s for r in mine for s in r["scores"]]
        total = {k: sum(s[k] for s in scores) for k in scores[0]}
        right = sum(s["right"] * s["words"] for s in scores) / max(1, total["words"])
        audio = sum(r["audio_s"] for r in mine) * sessions
        per = {k: sum(r[k] for r in mine) / audio for k in ("diarize_cpu_s", "word_timestamps_cpu_s")}
        worker = sum(r["diarize_worker_s"] for r in mine) / audio
        lines.append(
            f"| {kind} | {len(mine)} | {total['words']} | {right:.1%} | {total['merged']} "
            f"({total['merged_lenient']}) of {total['long_turns']} | {total['mixed']} "
            f"({total['mixed_lenient']}) / {total['finals']} | {per['diarize_cpu_s']:.3f} "
            f"| {per['word_timestamps_cpu_s']:.3f} | {worker:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav", type=Path, default=DEFAULT_WAV)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", choices=tuple(dialogue.SETS), help="instead: every dialogue of a set")
    parser.add_argument("--sessions", type=int, default=1, help="with --set: sessions at once per dialogue")
    parser.add_argument("--items", type=int, help="with --set: only its first N dialogues")
    parser.add_argument("--out", type=Path, help="with --set: write the JSON results here")
    parser.add_argument("--encoder", choices=("ge2e", "campplus"), default="ge2e", help="the voice encoder")
    args = parser.parse_args(argv)
    if args.set:
        params = dialogue.SETS[args.set]()
        rows = asyncio.run(measure_set(dialogue.ensure(params), args.sessions, args.items, args.encoder))
        print(set_summary(rows, args.sessions))
        if args.out:
            result = {
                "machine": machine(),
                "set": args.set,
                "sessions": args.sessions,
                "encoder": args.encoder,
                "rows": rows,
            }
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        return 0
    with wave.open(str(args.wav), "rb") as w:
        audio_s = w.getnframes() / w.getframerate()
    results = asyncio.run(measure(args.wav, args.rounds, args.encoder))
    print(f"{args.wav.name}: {audio_s:.1f} s of audio, {args.rounds} rounds")
    for name, runs in results.items():
        cpu = np.array([r[0] for r in runs])
        busy = np.array([r[1] for r in runs])
        median = statistics.median(cpu)
        print(
            f"{name:16s} CPU {median:6.2f} s ({median / audio_s:.3f} s per s of audio)"
            f"  speaker worker {statistics.median(busy):5.2f} s  finals {[len(r[2]) for r in runs]}"
            f"  runs {', '.join(f'{c:.2f}' for c in cpu)}"
        )
    for finals in (r[2] for r in results["diarize"]):
        right = words_right(args.wav, finals)
        print(f"diarize: words with the right speaker {right:.1%}" if right is not None else "no manifest")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
