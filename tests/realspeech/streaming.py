"""Streaming committed corpus items through a test server, faster than real time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer
from support import API_KEY, base_url

from streamer.client import StreamerClient
from streamer_bench import corpus
from streamer_bench.corpus import Corpus, Item

CORPUS_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"
CHUNK_MS = 100
SPEED = 1.0  # real time, as clients stream: when an utterance ends depends on when its decode is back


def committed() -> Corpus:
    return corpus.load(CORPUS_DIR)


async def stream_item(
    server: TestServer, item: Item, speed: float = SPEED, source: Corpus | None = None
) -> list[dict[str, Any]]:
    """Every event one session receives while the item (of ``source``, default the committed corpus)
    streams through it, up to ``session.closed``."""
    pcm = (source or committed()).pcm(item).tobytes()
    step = item.sample_rate * 2 * CHUNK_MS // 1000
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"sample_rate": item.sample_rate, "language": "en"})
        async with stream:
            reader = asyncio.create_task(_collect(stream))
            for i in range(0, len(pcm), step):
                await stream.ws.send_bytes(pcm[i : i + step])
                await asyncio.sleep(CHUNK_MS / 1000 / speed)
            await stream.close_session()
            events = await asyncio.wait_for(reader, 60)
    assert events and events[-1]["type"] == "session.closed", events[-3:]
    return events


async def _collect(stream: Any) -> list[dict[str, Any]]:
    return [e async for e in stream]


def finals_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "transcript.final"]
