"""The bench's sessions against a real server in this process (a fake model, real VAD, real protocol)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import base_url, make_settings

from streamer.app import create_app
from streamer.client import StreamerClient
from streamer.pipeline.vad import SileroVad
from streamer_bench import corpus as corpus_mod
from streamer_bench.idle import NOISE_DBFS, IdleFleet, idle_chunks
from streamer_bench.script import FIXTURES, Source, pieces_of, start_offsets
from streamer_bench.server import BENCH_KEY
from streamer_bench.sessions import new_http, run_sessions

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


def test_idle_chunks_are_one_frame_of_near_silence_and_of_low_noise() -> None:
    chunks = idle_chunks()
    assert set(chunks) == {"silence", "noise"}
    for chunk in chunks.values():
        assert len(chunk) == 2 * 16000 // 10  # 100 ms of PCM16 at 16 kHz
    silence = np.frombuffer(chunks["silence"], "<i2")
    noise = np.frombuffer(chunks["noise"], "<i2").astype(float) / 32768
    assert np.abs(silence).max() <= 8  # a dither of a few LSB: under -70 dBFS
    assert NOISE_DBFS - 2 < 20 * np.log10(np.sqrt(np.mean(noise**2))) < NOISE_DBFS + 2


async def test_an_idle_fleet_streams_in_real_time_and_closes_every_session(start: Start) -> None:
    url = await start()
    async with new_http() as http, StreamerClient(url, api_key=BENCH_KEY, http=http) as client:
        fleet = IdleFleet(client, idle_chunks())
        await fleet.open(6)
        await asyncio.sleep(0.6)
        await fleet.close()
    assert fleet.kinds == {"silence": 3, "noise": 3}
    assert (fleet.outcomes.refused, fleet.outcomes.failed) == (0, 0)
    for stream, _ in fleet.streams:
        closed = [e for _, e in stream.events if e["type"] == "session.closed"]
        assert len(closed) == 1 and closed[0]["audio_ms"] >= 300  # its chunks arrived while it idled
