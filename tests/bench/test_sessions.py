"""The bench's sessions against a real server in this process (a fake model, real VAD, real protocol)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import base_url, make_settings

from streamer.app import create_app
from streamer.pipeline.vad import SileroVad
from streamer_bench import corpus as corpus_mod
from streamer_bench.script import FIXTURES, Source, pieces_of, start_offsets
from streamer_bench.server import BENCH_KEY
from streamer_bench.sessions import run_sessions

Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def start(silero: SileroVad) -> AsyncIterator[Start]:
    servers: list[TestServer] = []

    async def factory(**settings: Any) -> str:
        app = create_app(make_settings(api_keys=(BENCH_KEY,), **settings), asr_engine=FakeAsr(), vad=silero)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return base_url(server)

    yield factory
    for server in servers:
        await server.close()


@pytest.fixture(scope="module")
def short() -> Source:
    """Every session says the corpus fixtures' shortest sentence: about 3 s of audio in all."""
    source = pieces_of(corpus_mod.load(FIXTURES), "clean", {})
    piece = min(source.pieces, key=lambda p: p.speech)
    return Source(source.rate, source.lead, (piece,))


async def test_synchronized_sessions_start_together_and_each_sentence_gets_its_final(
    start: Start, short: Source
) -> None:
    url = await start()
    scripts = [short.script(i, 3, 1) for i in range(3)]
    score = await run_sessions(url, scripts, "sync", start_offsets(3, "sync", 6.0))
    summary = score.summary()
    assert (summary["sessions"], summary["refused"], summary["failed"]) == (3, 0, 0)
    assert (summary["sentences"], summary["lost"]) == (3, 0)
    assert summary["finals"] >= 3
    assert len(score.latencies) == 3 and all(0 < lat < 3 for lat in score.latencies)
    assert summary["start_spread_s"] < 0.25  # offsets within 0.1 s, plus the scheduler's jitter
    assert summary["wer"] is not None and summary["wer"] > 0  # the fake model says "hello world"


async def test_a_session_over_the_limit_is_counted_refused_not_lost(start: Start, short: Source) -> None:
    url = await start(max_sessions=2)
    scripts = [short.script(i, 3, 1) for i in range(3)]
    score = await run_sessions(url, scripts, "spread", start_offsets(3, "spread", 0.3))
    assert (score.sessions, score.refused, score.lost, score.sentences) == (3, 1, 0, 3)
    assert sum(n for code, n in score.errors.items() if code.startswith("refused_")) == 1
    assert len(score.latencies) == 2
