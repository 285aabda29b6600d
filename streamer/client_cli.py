"""``streamer stream FILE.wav``: stream a file to a server and print results as they arrive."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from streamer.client import ClientError, StreamerClient, read_wav


def _line(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    if kind == "transcript.final":
        start, end = event["audio_start_ms"] / 1000, event["audio_end_ms"] / 1000
        return f"[{start:7.2f}-{end:7.2f}] {event['text']}"
    if kind == "translation.final":
        return f"{'':17}({event['language']}) {event['text']}"
    if kind in ("error", "warning"):
        return f"{kind}: {event['code']}: {event['message']}"
    return None


async def _run(args: argparse.Namespace) -> int:
    pcm, rate = read_wav(args.file)
    config: dict[str, Any] = {"sample_rate": rate, "task": args.task}
    if args.language:
        config["language"] = args.language
    if args.translate_to:
        config["translate_to"] = args.translate_to
    api_key = args.api_key or os.environ.get("STREAMER_API_KEY")
    async with StreamerClient(args.url, api_key=api_key) as client:
        try:
            stream = await client.connect(config)
        except ClientError as e:
            print(f"streamer: session refused: {e}", file=sys.stderr)
            return 1
        async with stream:
            sender = asyncio.create_task(stream.send_pcm(pcm, rate, realtime=args.realtime))
            partial_shown = False
            async for event in stream:
                if args.json:
                    print(json.dumps(event), flush=True)
                    continue
                if event.get("type") == "transcript.partial" and sys.stdout.isatty():
                    print(f"\r\x1b[2K… {event['text']}", end="", flush=True)
                    partial_shown = True
                    continue
                line = _line(event)
                if line is not None:
                    if partial_shown:
                        print("\r\x1b[2K", end="")
                        partial_shown = False
                    print(line, flush=True)
            await sender
    return 0 if stream.close_code in (1000, None) else 1


def stream_file(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
