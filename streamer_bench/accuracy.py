"""``streamer bench --accuracy``: the realistic corpus streamed through a real server, scored.

For every condition of the corpus (clean, fast and slow speech, 20 and 10 dB SNR, levels, the 8 kHz phone
band) and every session count, that many sessions stream the condition's audio concurrently in real time
over protocol v1. Reported per condition: WER of the finals against the reference text, against the same
model's offline beam-5 transcription of each whole sentence (and that offline WER against the text),
lost sentences (no final overlaps them), merged and split sentences, stray finals and
``unrecognized_speech`` warnings; and finals on the non-speech clips. JSON (``--out``) and a markdown table.

``--input commands`` (or ``dialogue``, ``continuous``) streams one stream of another kind of input
(:mod:`streamer_bench.speech_kinds`) instead, scored as one condition named after the kind: short commands
(1-2 s) are where a short decoding window loops.

The server runs in this process on a free port unless ``--url`` names one (then ``--api-key`` too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from streamer.client import ClientError, Stream, StreamerClient
from streamer_bench import corpus as corpus_mod
from streamer_bench import signals, speech_kinds
from streamer_bench.corpus import Corpus, CorpusParams, Item
from streamer_bench.corpus_text import COMMANDS, DIALOGUE, SENTENCES
from streamer_bench.cpu import cpu_info, model_dir
from streamer_bench.report import machine
from streamer_bench.scoring import Tally, assign, score
from streamer_bench.speech_kinds import KINDS

BENCH_KEY = "accuracy-key-0123456789abcdef0123456789abcdef"
CHUNK_MS = 100
KIND_TEXTS = {"continuous": SENTENCES, "dialogue": DIALOGUE, "commands": COMMANDS}
OFFLINE_PAD_S = 0.2  # silence the offline decode gets around each sentence, as a segmenter would leave


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer bench --accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server (default: start one in this process)")
    parser.add_argument("--api-key", default=os.environ.get("STREAMER_API_KEY"), help="key for --url")
    parser.add_argument("--model", default="tiny.en", help="ASR model for the in-process server and offline")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--sessions", default="1,16", help="comma-separated concurrent session counts")
    parser.add_argument("--sentences", type=int, help="only the first N corpus sentences")
    parser.add_argument("--conditions", help="comma-separated conditions (default: all in the corpus)")
    parser.add_argument("--corpus", type=Path, help="a corpus directory (default: generated into the cache)")
    parser.add_argument(
        "--input",
        choices=["corpus", *KINDS],
        default="corpus",
        help="the realistic corpus, or one stream of another kind (short commands: 1-2 s each)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="send audio this many times real time")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline beam-5 reference")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    return parser


def main(argv: list[str]) -> int:
    """Run the accuracy bench; 0 when every sentence got a final and no non-speech did."""
    args = build_parser().parse_args(argv)
    if args.url and not args.api_key:
        print("streamer bench --accuracy: --url needs --api-key (or STREAMER_API_KEY)", file=sys.stderr)
        return 2
    counts = [int(x) for x in args.sessions.split(",") if x.strip()]
    if not counts or min(counts) < 1 or args.speed <= 0:
        print("streamer bench --accuracy: sessions must be positive and --speed > 0", file=sys.stderr)
        return 2
    try:
        corpus = _corpus(args)
    except ModuleNotFoundError as e:  # generating the corpus needs the voice
        print(
            f"streamer bench --accuracy: {e.name} is missing: pip install 'streamer[bench]'", file=sys.stderr
        )
        return 2
    except (OSError, ValueError) as e:
        print(f"streamer bench --accuracy: no corpus: {e}", file=sys.stderr)
        return 2
    wanted = [c.strip() for c in args.conditions.split(",")] if args.conditions else None
    items = [
        it for it in corpus.items if wanted is None or it.condition in wanted or it.condition == "nonspeech"
    ]
    if wanted and not any(it.sentences for it in items):
        print(f"streamer bench --accuracy: no such conditions in the corpus: {wanted}", file=sys.stderr)
        return 2
    offline = None if args.no_offline else offline_transcripts(corpus, items, args.model, args.device)
    report = asyncio.run(_run(args, corpus, items, counts, offline))
    print(markdown_table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    lost = sum(r["lost"] for r in report["runs"]) + sum(r["finals"] for r in report["nonspeech"])
    return 0 if lost == 0 else 1


def _corpus(args: argparse.Namespace) -> Corpus:
    if args.corpus:
        return corpus_mod.load(args.corpus)
    if args.input != "corpus":  # one stream, scored like a corpus condition named after its kind
        texts = KIND_TEXTS[args.input][: args.sentences] if args.sentences else None
        return speech_kinds.ensure(speech_kinds.params_for(args.input, texts))
    sentences = SENTENCES[: args.sentences] if args.sentences else SENTENCES
    return corpus_mod.ensure(CorpusParams(sentences=sentences))


# --- offline reference


def offline_transcripts(
    corpus: Corpus, items: Sequence[Item], model: str, device: str
) -> dict[str, list[str]]:
    """Every sentence of every item decoded whole by the same model, beam 5, a full 30 s window."""
    from streamer.pipeline.asr import AsrRequest, WhisperEngine
    from streamer.pipeline.models import resolve_asr_model

    engine = WhisperEngine(resolve_asr_model(model), device=device, beam_size=5, pad_to_buckets=False)
    out: dict[str, list[str]] = {}
    for item in items:
        audio = signals.resample(corpus.pcm(item).astype(np.float32) / 32768.0, item.sample_rate, 16000)
        pad = int(OFFLINE_PAD_S * 16000)
        requests = [
            AsrRequest(audio[max(0, s.start_ms * 16 - pad) : s.end_ms * 16 + pad], language="en")
            for s in item.sentences
        ]
        out[item.id] = [
            r.text for k in range(0, len(requests), 8) for r in engine.transcribe_batch(requests[k : k + 8])
        ]
    return out


# --- streaming


async def _run(
    args: argparse.Namespace,
    corpus: Corpus,
    items: Sequence[Item],
    counts: Sequence[int],
    offline: dict[str, list[str]] | None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": machine(),
        # the CPU this process runs on: the server's too unless --url names another machine
        "cpu": cpu_info(model_dir(args.model) if args.device == "cpu" else None),
        "starts": "staggered, 0.05 s apart",
        "model": args.model,
        "device": args.device,
        "corpus": corpus.key,
        "speed": args.speed,
        "offline": "beam 5, 30 s window" if offline else None,
        "runs": [],
        "nonspeech": [],
    }
    async with _server(args) as (url, key), StreamerClient(url, api_key=key) as client:
        for n in counts:
            for item in items:
                started = time.monotonic()
                results = await asyncio.gather(
                    *(_stream_item(client, corpus, item, args.speed, i) for i in range(n))
                )
                tally, refused = Tally(), 0
                for events in results:
                    if events and str(events[0].get("code", "")).startswith("refused_"):
                        refused += 1  # admission said no: nothing was streamed, so nothing to score
                        tally.errors.append(str(events[0]["code"]))
                        continue
                    tally.add(score(events, item.sentences, offline.get(item.id) if offline else None))
                row = {"condition": item.condition, "item": item.id, "sessions": n, "refused": refused}
                row.update(tally.summary())
                row["seconds"] = round(time.monotonic() - started, 1)
                if item.sentences:  # what the sessions heard, sentence by sentence (JSON only)
                    heard = [
                        e for e in results if not (e and str(e[0].get("code", "")).startswith("refused_"))
                    ]
                    row["detail"] = detail(
                        heard or results[:1], item, offline.get(item.id) if offline else None
                    )
                report["nonspeech" if not item.sentences else "runs"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "detail"}), flush=True)
    return report


def detail(
    sessions: Sequence[Sequence[dict[str, Any]]], item: Item, offline: Sequence[str] | None
) -> list[dict[str, Any]]:
    """Per sentence: the reference, the finals the first session got for it, the offline transcript, and
    (several sessions) how many sessions got each different result: the same audio streamed at once should
    come back the same, so a variant names what load changed."""
    owned_by_session = [
        assign(
            [e for e in events if e.get("type") == "transcript.final" and not e.get("dropped")],
            item.sentences,
        )
        for events in sessions
    ]
    rows = []
    for k, sentence in enumerate(item.sentences):
        heard = [[f["text"] for f in owned[k]] for owned in owned_by_session]
        row: dict[str, Any] = {
            "id": sentence.id,
            "text": sentence.text,
            "finals": heard[0],
            "offline": offline[k] if offline else None,
        }
        if len(heard) > 1:
            row["variants"] = dict(Counter(" | ".join(h) for h in heard).most_common())
        rows.append(row)
    return rows


@asynccontextmanager
async def _server(args: argparse.Namespace) -> AsyncIterator[tuple[str, str]]:
    if args.url:
        yield args.url, args.api_key
        return
    from aiohttp import web

    from streamer.app import create_app
    from streamer.config import Settings

    # Settings(...) reads no STREAMER_* variables: the bench's server is the same wherever it runs
    settings = Settings(
        api_keys=(BENCH_KEY,),
        asr_model=args.model,
        device=args.device,
        max_sessions=256,
        saturation_latency_s=1000.0,  # measure accuracy under load, do not refuse
        max_realtime_factor=max(3.0, args.speed * 2),
        log_level="WARNING",
    )
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", BENCH_KEY
    finally:
        await runner.cleanup()
        sock.close()


async def _stream_item(
    client: StreamerClient, corpus: Corpus, item: Item, speed: float, index: int
) -> list[dict[str, Any]]:
    """One session streams the item in (``speed`` times) real time; returns every event it received.

    Trouble (a refusal, a socket the server closed, a session that never ends) becomes an ``error`` event
    in the list, so one failed session is scored as such instead of ending the run.
    """
    await asyncio.sleep(index * 0.05)  # staggered starts, as users arrive
    try:
        stream = await client.connect({"sample_rate": item.sample_rate, "language": "en"})
    except ClientError as e:
        return [{"type": "error", "code": f"refused_{e.code}"}]
    except (aiohttp.ClientError, OSError) as e:
        return [{"type": "error", "code": f"connect_failed_{type(e).__name__}"}]
    trouble: list[dict[str, Any]] = []
    async with stream:
        reader = asyncio.create_task(_drain(stream))
        try:
            await _send(stream, corpus.pcm(item).tobytes(), item.sample_rate, speed)
        except (aiohttp.ClientError, ConnectionError) as e:
            trouble.append({"type": "error", "code": f"closed_while_sending_{type(e).__name__}"})
        try:
            await asyncio.wait_for(reader, 120)
        except TimeoutError:
            trouble.append({"type": "error", "code": "bench_timeout"})
    return [e for _, e in stream.events] + trouble


async def _send(stream: Stream, pcm: bytes, rate: int, speed: float) -> None:
    step = rate * 2 * CHUNK_MS // 1000
    t0 = time.monotonic()
    for k, i in enumerate(range(0, len(pcm), step)):
        delay = t0 + k * CHUNK_MS / 1000 / speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await stream.ws.send_bytes(pcm[i : i + step])
    await stream.close_session()


async def _drain(stream: Stream) -> None:
    async for _ in stream:
        pass


# --- report


COLUMNS = (  # (header, key in a row, is a rate)
    ("condition", "condition", False),
    ("sessions", "sessions", False),
    ("refused", "refused", False),
    ("sentences", "sentences", False),
    ("lost", "lost", False),
    ("merged", "merged", False),
    ("split", "split", False),
    ("stray finals", "stray_finals", False),
    ("unrecognized warnings", "unrecognized_warnings", False),
    ("WER", "wer", True),
    ("offline beam-5 WER", "offline_wer", True),
    ("WER vs offline", "wer_vs_offline", True),
)


def markdown_table(report: dict[str, Any]) -> str:
    """Per condition and session count; then the non-speech clips."""
    rows = ["| " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|---" + "|---:" * (len(COLUMNS) - 1) + "|"]
    for r in report["runs"]:
        rows.append("| " + " | ".join(_pct(r[k]) if rate else str(r[k]) for _, k, rate in COLUMNS) + " |")
    if report["nonspeech"]:
        rows += ["", "| non-speech clip | sessions | refused | finals |", "|---|---:|---:|---:|"]
        rows += [
            f"| {r['item']} | {r['sessions']} | {r['refused']} | {r['finals']} |" for r in report["nonspeech"]
        ]
    return "\n".join(rows)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
