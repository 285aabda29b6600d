"""``streamer stream FILE.wav``: stream a file to a server and print results as they arrive."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from streamer.client import ClientError, StreamerClient, read_wav
from streamer.progress import StatusLine, bar


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


class _LiveView:
    """The status line of ``streamer stream``: how much audio is sent, and the latest partial."""

    def __init__(self, status: StatusLine, total_s: float) -> None:
        self.status = status
        self.total_s = total_s
        self.sent_s = 0.0
        self.partial = ""

    def sent(self, sent_ms: float, _at: float) -> None:
        self.sent_s = sent_ms / 1000
        self._redraw(force=False)

    def show_partial(self, text: str) -> None:
        self.partial = text
        self._redraw(force=True)

    def print(self, line: str) -> None:
        self.partial = ""  # a final replaces the partial it came from
        self.status.set(self._text(), force=False)
        self.status.print(line)

    def _text(self) -> str:
        sent = f"{bar(self.sent_s, self.total_s)} {self.sent_s:6.1f}/{self.total_s:.1f} s"
        return f"{sent}  … {self.partial}" if self.partial else sent

    def _redraw(self, *, force: bool) -> None:
        self.status.set(self._text(), force=force)


async def _run(args: argparse.Namespace) -> int:
    pcm, rate = read_wav(args.file)
    config: dict[str, Any] = {"sample_rate": rate, "task": args.task}
    if args.encoding != "pcm16":  # the WAV's PCM is encoded by send_pcm (streamer.client_audio)
        config["encoding"] = args.encoding
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
        # progress and partials on one line redrawn in place: only on a terminal, never with --json
        view = _LiveView(StatusLine.for_terminal(sys.stdout, quiet=args.json), len(pcm) / 2 / rate)
        async with stream:
            sender = asyncio.create_task(
                stream.send_pcm(pcm, rate, realtime=args.realtime, on_chunk=view.sent)
            )
            try:
                async for event in stream:
                    if args.json:
                        print(json.dumps(event), flush=True)
                    elif event.get("type") == "transcript.partial":
                        view.show_partial(event["text"])
                    elif (line := _line(event)) is not None:
                        view.print(line)
            finally:
                view.status.close()
            await sender
    return 0 if stream.close_code in (1000, None) else 1


def stream_file(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
