"""Command line: ``streamer serve | stream | bench | bench-mt``.

Parse args, build Settings, run; nothing else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from streamer.errors import StreamerError


def _serve(args: argparse.Namespace) -> int:
    from streamer.app import create_app
    from streamer.config_env import load_settings
    from streamer.listen import serve
    from streamer.logs import setup_logging
    from streamer.pipeline.models import resolve_asr_model

    settings = load_settings(host=args.host, port=args.port, asr_model=args.model, device=args.device)
    setup_logging(settings.log_level, settings.log_json)
    resolve_asr_model(settings.asr_model, settings.model_cache_dir)  # fail early, with what to install
    log = logging.getLogger("streamer")
    if not settings.api_keys and not settings.demo_enabled:
        log.warning("no STREAMER_API_KEYS and demo mode off: nobody can connect")
    if settings.redis_url is None and os.environ.get("STREAMER_JWT_SECRET"):
        log.warning(
            "STREAMER_JWT_SECRET is fixed but used token ids are kept in memory (no STREAMER_REDIS_URL): "
            "a token used in the %.0fs before a restart can be used once more after it",
            settings.token_ttl_s + 60,
        )
    serve(create_app(settings), settings)
    return 0


def _stream(args: argparse.Namespace) -> int:
    from streamer.client_cli import stream_file

    return stream_file(args)


BENCH_MISSING = "the benchmarks are not installed: pip install 'streamer[bench]'"


def _bench(args: argparse.Namespace) -> int:
    try:
        from streamer_bench.accuracy import main as run_accuracy
        from streamer_bench.entry import run_bench
    except ModuleNotFoundError as e:
        if e.name is None or not e.name.startswith("streamer_bench"):
            raise
        raise StreamerError(BENCH_MISSING) from e
    if args.accuracy is not None:  # the options after --accuracy are the accuracy bench's own
        return run_accuracy(args.accuracy)
    if args.speakers is not None:  # likewise after --speakers
        from streamer_bench.speakers_bench import main as run_speakers

        return run_speakers(args.speakers)
    return run_bench(args)


def _bench_mt(args: argparse.Namespace) -> int:
    try:
        from streamer_bench.bench_mt import run_bench_mt
    except ModuleNotFoundError as e:
        if e.name is None or not e.name.startswith("streamer_bench"):
            raise
        raise StreamerError(BENCH_MISSING) from e
    return run_bench_mt(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description="Real-time speech streaming server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--model", help="ASR model: tiny.en, base or a CTranslate2 Whisper directory")
    serve.add_argument("--device", choices=["cpu", "cuda", "auto"])
    serve.set_defaults(func=_serve)

    stream = sub.add_parser("stream", help="stream a WAV file to a server and print results live")
    stream.add_argument("file", help="WAV file (16-bit, 8-48 kHz), or a recording in a container --encoding")
    stream.add_argument("--url", default="http://127.0.0.1:8080")
    stream.add_argument("--api-key", help="API key (default: $STREAMER_API_KEY, else demo mode)")
    stream.add_argument("--realtime", action="store_true", help="pace the audio in real time")
    stream.add_argument("--language", help="spoken language (ISO code); default: detect")
    stream.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    stream.add_argument("--translate-to", action="append", default=[], help="target language (repeatable)")
    stream.add_argument("--json", action="store_true", help="print every event as a JSON line")
    stream.add_argument(
        "--encoding",
        choices=["pcm16", "mulaw", "alaw", "webm", "ogg", "wav", "mp3", "flac", "container"],
        default="pcm16",
        help="send a WAV's PCM as pcm16 or G.711; or the file's bytes as they are, in this container",
    )
    stream.set_defaults(func=_stream)

    bench = sub.add_parser("bench", help="benchmark the server with concurrent real-time clients")
    bench.add_argument("--sessions", default="1,4,8,12,16,24,32", help="comma-separated session counts")
    bench.add_argument("--modes", default="on,off", help="techniques (batching etc.) to compare: on, off")
    bench.add_argument("--starts", default="sync,spread", help="sync (within 0.1 s), spread, or both")
    bench.add_argument("--spread-s", type=float, default=6.0, help="spread starts over this many seconds")
    bench.add_argument(
        "--input",
        choices=["corpus", "continuous", "dialogue", "commands", "espeak"],
        default="corpus",
        help="what sessions say: corpus sentences, continuous reading, quick dialogue, short commands",
    )
    bench.add_argument("--condition", default="clean", help="corpus condition: clean, fast, slow, snr20, ...")
    bench.add_argument("--corpus", type=Path, help="a corpus directory (default: generated and cached)")
    bench.add_argument("--sentences", type=int, help="generate the corpus from its first N sentences only")
    bench.add_argument("--model", default="tiny.en")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--utterances", type=int, default=3, help="sentences per session")
    bench.add_argument(
        "--encoding",
        default="pcm16",
        help="pcm16, or Opus in webm or ogg sent in 250 ms pieces; a comma list compares them in one run",
    )
    bench.add_argument("--bound", type=float, default=1.5, help="p95 final-latency bound for capacity (s)")
    bench.add_argument(
        "--diarize", action="store_true", help="sessions ask for speaker labels (diarize, word timestamps)"
    )
    bench.add_argument(
        "--server-env", action="append", metavar="STREAMER_X=V", help="extra server setting (repeatable)"
    )
    bench.add_argument("--idle", type=int, help="instead: N idle sessions (silence, noise) beside 4 speakers")
    bench.add_argument("--soak", type=float, default=0.0, help="soak: minutes to run the largest N")
    bench.add_argument("--out", help="write the JSON results here")
    bench.add_argument(
        "--accuracy",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="instead: accuracy on the realistic speech corpus; options after it are its own",
    )
    bench.add_argument(
        "--speakers",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="instead: speaker labels on multi-voice dialogues; options after it are its own",
    )
    bench.set_defaults(func=_bench)

    bench_mt = sub.add_parser(
        "bench-mt", help="translation throughput through the server's batcher vs. bare CTranslate2"
    )
    bench_mt.add_argument(
        "--model", help="CTranslate2 MT model dir (default: a synthetic random-weight model: overhead only)"
    )
    bench_mt.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    bench_mt.add_argument("--source", default="en", help="source language (ISO code)")
    bench_mt.add_argument("--target", default="es", help="target language (ISO code)")
    bench_mt.add_argument("--sessions", default="1,4,16,32", help="comma-separated concurrent sessions")
    bench_mt.add_argument("--per-session", type=int, default=40, help="sentences each session translates")
    bench_mt.add_argument("--batch-wait-ms", type=int, default=10, help="the batcher's wait (server default)")
    bench_mt.add_argument("--repeat", type=int, default=3, help="runs per N; the median is reported")
    bench_mt.add_argument("--out", help="write the JSON results here")
    bench_mt.set_defaults(func=_bench_mt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StreamerError as e:
        print(f"streamer: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
