"""Language per utterance on the bilingual set: how often detection is right, and what it costs a batch.

    python -m streamer_bench.language_bench [--model base] [--batch 4] [--repeat 5]
    python -m streamer_bench.language_bench --server      # the whole session through protocol v1

Each utterance of :mod:`streamer_bench.bilingual`'s set is cut from the recording at its ground-truth span
with 0.3 s of the recording either side (where the VAD would cut it) and decoded with no language, in
batches of ``--batch`` that mix the two languages, as the batcher groups an auto-language session's
finals: once with any language allowed, once restricted to ``en`` and ``ja``. The cost is timed on the same
batches: the encoder pass, the one detection step on its output, and the whole decode (encoder, detection,
generation), each the median of ``--repeat`` runs.

With ``--server``, the whole recording streams through a real server (its VAD cuts the utterances) as one
protocol v1 session with ``language: "auto"``, then with ``languages: ["en", "ja"]``; each utterance's
final is the one whose span holds the utterance's middle, and a missing final counts as wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from typing import Any

import numpy as np

from streamer.pipeline.asr import AsrRequest, WhisperEngine, bucket_frames
from streamer_bench.bilingual import Bilingual, BilingualParams, ensure

RATE = 16000
MARGIN_S = 0.3


def _median_s(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


BENCH_KEY = "bench-key-0123456789abcdef0123456789abcdef"


async def _session(url: str, pcm: bytes, config: dict[str, Any]) -> list[dict[str, Any]]:
    from streamer.client import StreamerClient

    async with StreamerClient(url, api_key=BENCH_KEY) as client:
        stream = await client.connect({"interim_results": False, **config})
        for i in range(0, len(pcm), 3200):
            await stream.ws.send_bytes(pcm[i : i + 3200])
            await asyncio.sleep(0.1 / 20)
        await stream.close_session()
        finals = []
        async with asyncio.timeout(600):
            while (event := await stream.receive()) is not None:
                if event.get("type") == "transcript.final":
                    finals.append(event)
    return finals


async def through_server(model: str, speech: Bilingual) -> None:
    from aiohttp import web

    from streamer.app import create_app
    from streamer.config import Settings

    pcm = (np.clip(speech.audio(), -1, 1) * 32767).astype("<i2").tobytes()
    settings = Settings(
        api_keys=(BENCH_KEY,),
        asr_model=model,
        device="cpu",
        max_realtime_factor=40.0,
        realtime_burst_s=120.0,
        log_level="WARNING",
    )
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        configs: list[dict[str, Any]] = [{"language": "auto"}, {"languages": ["en", "ja"]}]
        for config in configs:
            finals = await _session(url, pcm, config)
            right, wrong = 0, []
            for u in speech.utterances:
                middle = (u.start_ms + u.end_ms) // 2
                mine = [f for f in finals if f["audio_start_ms"] <= middle <= f["audio_end_ms"]]
                got = [str(f["language"]) for f in mine]
                if got == [u.language]:
                    right += 1
                else:
                    wrong.append(f"{u.language}->{got} ({u.text})")
            n = len(speech.utterances)
            print(f"server {config}: {right}/{n} right ({right / n:.1%}), {len(finals)} finals")
            for w in wrong:
                print(f"  wrong: {w}")
    finally:
        await runner.cleanup()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer_bench.language_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="base")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--server", action="store_true", help="stream the session through a real server")
    args = parser.parse_args(argv)
    if args.server:
        asyncio.run(through_server(args.model, ensure(BilingualParams())))
        return 0

    import ctranslate2

    from streamer.app import load_asr_engine
    from streamer.config import Settings

    engine = load_asr_engine(Settings(asr_model=args.model, device="cpu"))
    if not isinstance(engine, WhisperEngine) or not engine.multilingual:
        print(f"{args.model} is not a multilingual Whisper model", file=sys.stderr)
        return 2
    speech = ensure(BilingualParams())
    audio = speech.audio()
    margin = int(MARGIN_S * RATE)
    clips = [audio[max(0, u.start_ms * 16 - margin) : u.end_ms * 16 + margin] for u in speech.utterances]
    truth = [u.language for u in speech.utterances]
    batches = [list(range(i, min(i + args.batch, len(clips)))) for i in range(0, len(clips), args.batch)]

    for allowed in ((), ("en", "ja")):
        right, wrong = 0, []
        probabilities: list[float] = []
        for batch in batches:
            results = engine.transcribe_batch([AsrRequest(clips[i], languages=allowed) for i in batch])
            for i, result in zip(batch, results, strict=True):
                probabilities.append(result.language_probability or 0.0)
                if result.language == truth[i]:
                    right += 1
                else:
                    wrong.append(f"{truth[i]}->{result.language} ({speech.utterances[i].text})")
        label = ",".join(allowed) or "any"
        print(
            f"languages {label}: {right}/{len(clips)} right ({right / len(clips):.1%}), probability "
            f"min {min(probabilities):.2f} median {statistics.median(probabilities):.2f}"
        )
        for w in wrong:
            print(f"  wrong: {w}")

    encode_s, detect_s, decode_s, given_s = [], [], [], []
    for batch in batches:
        frames = bucket_frames(max(clips[i].size for i in batch), True)
        features = np.stack([engine.features(clips[i], frames) for i in batch])

        def encode(features: np.ndarray = features) -> object:
            return engine.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)

        encoded = encode()
        encode_s.append(_median_s(encode, args.repeat))
        detect_s.append(_median_s(lambda encoded=encoded: engine.model.detect_language(encoded), args.repeat))
        auto = [AsrRequest(clips[i]) for i in batch]
        given = [AsrRequest(clips[i], language=truth[i]) for i in batch]
        decode_s.append(_median_s(lambda auto=auto: engine.transcribe_batch(auto), args.repeat))
        given_s.append(_median_s(lambda given=given: engine.transcribe_batch(given), args.repeat))
    ms = {name: statistics.median(v) * 1000 for name, v in (("encode", encode_s), ("detect", detect_s))}
    print(
        f"per batch of {args.batch} (median over {len(batches)} batches): encoder "
        f"{ms['encode']:.0f} ms, detection {ms['detect']:.0f} ms, "
        f"whole decode with detection {statistics.median(decode_s) * 1000:.0f} ms, "
        f"with the languages given {statistics.median(given_s) * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
