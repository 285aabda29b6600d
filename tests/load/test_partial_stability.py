"""Partials on real speech with the real tiny.en model: stable text only grows and the final keeps it.

A ~26 s continuous passage (tests/fixtures/en_long.wav) is streamed in 100 ms frames at 2x real time
with interim results on. It is longer than ``max_utterance_s`` (15 s), so it also crosses a forced split.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from support import API_KEY, base_url, read_pcm16, silence, to_bytes

from streamer.client import StreamerClient
from streamer_bench.wer import edits, words

pytestmark = pytest.mark.slow

SPEED = 2.0
# Local agreement is a heuristic: two consecutive decodes of a growing prefix agreeing on a word does not
# oblige the final decode (the whole utterance, trimmed to its tail, in another padding bucket) to write
# it the same way. On this passage tiny.en revises about one stable word in fifteen ("net" -> "now"), and
# the first word of a segment, decoded from under a second of audio, is the least reliable of all: the
# passage's opening "Every" is heard as "and" until the final sees the whole sentence. So one word, or
# a quarter of the stable words if more, may differ; more than that means the stable text was not what
# the model heard.
MAX_STABLE_REVISED = 0.25


def keys(text: str) -> list[str]:
    """Words as the stabilizer compares them: case and punctuation do not matter."""
    return [re.sub(r"[^\w']", "", w.lower()) for w in text.split()]


@pytest.fixture(scope="module")
def long_pcm() -> bytes:
    return to_bytes(np.concatenate([silence(0.3), read_pcm16("en_long.wav"), silence(1.0)]))


async def stream_long(server: TestServer, pcm: bytes) -> list[dict[str, Any]]:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", "interim_results": True})
        async with stream:

            async def send() -> None:
                for i in range(0, len(pcm), 3200):
                    await stream.ws.send_bytes(pcm[i : i + 3200])
                    await asyncio.sleep(0.1 / SPEED)
                await stream.close_session()

            sender = asyncio.create_task(send())
            events = [e async for e in stream]
            await sender
    assert events[-1]["type"] == "session.closed"
    return events


async def test_stable_text_only_grows_and_the_final_keeps_it(make_server: Any, long_pcm: bytes) -> None:
    server = await make_server()
    events = await asyncio.wait_for(stream_long(server, long_pcm), 90)
    partials: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["type"] == "transcript.partial":
            partials[event["segment_id"]].append(event)
    finals = {e["segment_id"]: e for e in events if e["type"] == "transcript.final"}
    assert sum(len(p) for p in partials.values()) >= 5, "too few partials to judge"
    assert len(finals) >= 2  # the passage is longer than one utterance may be
    assert any(p["stable_text"] for ps in partials.values() for p in ps), "nothing ever became stable"

    for segment, shown in partials.items():
        for before, after in pairwise(shown):
            # stable words are never retracted (compared as the stabilizer compares them)
            old, new = keys(before["stable_text"]), keys(after["stable_text"])
            assert new[: len(old)] == old, (segment, before["stable_text"], after["stable_text"])
            # each partial is the whole hypothesis of a longer stretch of audio than the last: it may
            # revise words, but it does not lose most of them
            assert len(after["text"].split()) >= len(before["text"].split()) // 2, (
                segment,
                before["text"],
                after["text"],
            )
        for partial in shown:
            assert keys(partial["text"])[: len(keys(partial["stable_text"]))] == keys(partial["stable_text"])

    for segment, final in finals.items():
        stable = words(partials[segment][-1]["stable_text"]) if partials[segment] else []
        if not stable:
            continue
        head = words(final["text"])[: len(stable)]
        revised = edits(stable, head)
        assert revised <= max(1, MAX_STABLE_REVISED * len(stable)), (
            segment,
            partials[segment][-1]["stable_text"],
            final["text"],
        )
