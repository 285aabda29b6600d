"""Short commands streamed in real time: each one final, said once (issue 24 item 4).

tests/fixtures/commands holds three piper commands of 1.1-1.2 s from ``streamer bench --input commands``
(README.md there). In the 5 s window a short utterance is decoded in, tiny.en wrote each of them again
on this machine (BENCHMARKS.md, "Short commands"): "Call my sister. Call my sister. Call my sister"
was delivered as "Call my sister. Call my sister.", and "Start the dishwasher. Start the dishwasher.
Start" as it was. Whether the greedy decode loops depends on the CPU's int8 rounding (see
test_corpus_speech.py), so what is asserted holds on any machine: one final per command, with the
command's words in it once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from support import make_settings

from realspeech.streaming import finals_of, stream_item
from streamer.pipeline.hallucination import normalise
from streamer_bench import corpus
from streamer_bench.scoring import assign, content_recall

pytestmark = pytest.mark.slow

COMMANDS_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "commands"


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await make_server(make_settings(saturation_latency_s=1000.0))


async def test_every_short_command_is_one_final_said_once(server: TestServer) -> None:
    commands = corpus.load(COMMANDS_DIR)
    item = commands.items[0]
    events = await asyncio.wait_for(stream_item(server, item, source=commands), 60)
    finals = finals_of(events)
    problems = []
    for sentence, owned in zip(item.sentences, assign(finals, item.sentences), strict=True):
        texts = [f["text"] for f in owned]
        words = normalise(" ".join(texts)).split()
        if len(owned) != 1 or len(words) > len(normalise(sentence.text).split()) + 1:
            problems.append(f"{sentence.text!r} -> {texts}")
        elif content_recall(sentence, texts[0]) < 0.6:
            problems.append(f"content words missing: {sentence.text!r} -> {texts}")
    assert not problems, problems
