"""CPU of a diarized session on a real server: the same dialogue streamed with and without ``diarize``.

    python -m streamer_bench.diarize_cpu [--wav tests/fixtures/dialogue/two0_joe_alpha.wav] [--rounds 2]

The server runs in this process (tiny.en, Silero, the speaker worker); each run streams the whole file
through protocol v1 (no partials, 20x real time) in one of three configs, alternating by round: plain,
``word_timestamps`` (what diarization implies), ``diarize``. It reports the process CPU seconds per run
(``time.process_time``: every thread, the client's share included, the same in each config) and the
speaker worker's busy seconds, per second of audio.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import statistics
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

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


async def _run(url: str, pcm: bytes, extra: dict[str, Any]) -> list[dict[str, Any]]:
    from streamer.client import StreamerClient

    async with StreamerClient(url, api_key=BENCH_KEY) as client:
        stream = await client.connect({"language": "en", "interim_results": False, **extra})
        for i in range(0, len(pcm), CHUNK):
            await stream.ws.send_bytes(pcm[i : i + CHUNK])
            await asyncio.sleep(0.1 / 20)
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


async def measure(wav: Path, rounds: int) -> dict[str, list[Run]]:
    from aiohttp import web

    from streamer.app import create_app
    from streamer.config import Settings
    from streamer.edge.handshake import SERVICES

    with wave.open(str(wav), "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise SystemExit(f"{wav}: expected 16 kHz mono PCM16")
        pcm = w.readframes(w.getnframes())
    settings = Settings(
        api_keys=(BENCH_KEY,),
        device="cpu",
        max_realtime_factor=40.0,
        realtime_burst_s=60.0,
        log_level="WARNING",
    )
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    out: dict[str, list[Run]] = {name: [] for name in CONFIGS}
    try:
        await web.SockSite(runner, sock).start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        worker = app[SERVICES].speakers
        if worker is None:
            raise SystemExit("no speaker encoder: run scripts/setup.sh (or set STREAMER_SPEAKER_WEIGHTS)")
        await _run(url, pcm[: 16000 * 2 * 3], {})  # warm the models
        for _ in range(rounds):
            for name, extra in CONFIGS.items():
                cpu, busy = time.process_time(), worker.busy_s
                finals = await _run(url, pcm, extra)
                out[name].append((time.process_time() - cpu, worker.busy_s - busy, finals))
    finally:
        await runner.cleanup()
        sock.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav", type=Path, default=DEFAULT_WAV)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with wave.open(str(args.wav), "rb") as w:
        audio_s = w.getnframes() / w.getframerate()
    results = asyncio.run(measure(args.wav, args.rounds))
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
