"""``streamer stream FILE.wav``: stream a file to a server and print results as they arrive."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from streamer.client import ClientError, StreamerClient, read_wav
from streamer.client_audio import CONTAINERS, container_seconds
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
    contained = args.encoding in CONTAINERS
    if contained:  # the file's bytes go as they are: the server decodes the container
        data = await asyncio.to_thread(Path(args.file).read_bytes)
        total_s = await asyncio.to_thread(container_seconds, data)
        config: dict[str, Any] = {"encoding": args.encoding, "task": args.task}
    else:
        pcm, rate = read_wav(args.file)
        total_s = len(pcm) / 2 / rate
        config = {"sample_rate": rate, "task": args.task}
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
        view = _LiveView(StatusLine.for_terminal(sys.stdout, quiet=args.json), total_s)
        async with stream:
            if contained:
                # without --realtime, as fast as the server's pacing takes with room to spare
                speed = 1.0 if args.realtime else 0.8 * float(stream.info.limits["max_realtime_factor"])
                sending = stream.send_container(data, total_s, speed=speed, on_chunk=view.sent)
            else:
                sending = stream.send_pcm(pcm, rate, realtime=args.realtime, on_chunk=view.sent)
            sender = asyncio.create_task(sending)
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
            if stream.close_code is None:  # iteration ends at session.closed: the close frame says how
                await stream.receive(timeout=10)
            with contextlib.suppress(ConnectionError):  # the server closed first: the code says why
                await sender
    return 0 if stream.close_code in (1000, None) else 1


def stream_file(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
