"""``streamer bench --diarize``: the session config its sessions send, the option, the report's columns."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import base_url, make_settings

from streamer.app import create_app
from streamer.cli import build_parser
from streamer.pipeline.vad import SileroVad
from streamer.protocol import SessionConfig
from streamer_bench import corpus as corpus_mod
from streamer_bench.bench import parse_options
from streamer_bench.report import capacity, column
from streamer_bench.script import FIXTURES, InputError, Source, pieces_of, start_offsets
from streamer_bench.server import BENCH_KEY
from streamer_bench.sessions import run_sessions, session_config

Start = Callable[..., Awaitable[str]]


def bench_args(*extra: str) -> Any:
    return build_parser().parse_args(["bench", *extra])


def test_a_diarized_session_asks_for_speakers_and_word_timings_as_a_client_would() -> None:
    assert session_config(16000) == {"sample_rate": 16000, "language": "en"}
    config = session_config(16000, "webm", diarize=True)
    assert config == {
        "sample_rate": 16000,
        "language": "en",
        "encoding": "webm",
        "diarize": True,
        "word_timestamps": True,
    }
    parsed = SessionConfig.model_validate(config)  # what the server reads from it
    assert parsed.diarize and parsed.word_timestamps


def test_the_diarize_option_reaches_the_sweep_and_is_refused_where_it_means_nothing() -> None:
    assert parse_options(bench_args()).diarize is False
    assert parse_options(bench_args("--diarize", "--sessions", "1,8", "--modes", "on")).diarize is True
    for bad in (["--diarize", "--idle", "10"], ["--diarize", "--soak", "1"]):
        with pytest.raises(InputError, match="--diarize"):
            parse_options(bench_args(*bad))


def test_diarized_runs_are_their_own_column_and_capacity() -> None:
    def run(diarize: bool, n: int, p95: float) -> dict[str, Any]:
        row = {"mode": "on", "starts": "sync", "sessions": n, "refused": 0, "failed": 0, "lost": 0}
        return {**row, "encoding": "pcm16", "diarize": diarize, "lat_p95": p95}

    assert column(run(False, 1, 0.5)) == "on"
    assert column(run(True, 1, 0.5)) == "on diarize"
    runs = [run(False, 1, 0.5), run(False, 8, 0.9), run(True, 1, 0.6), run(True, 8, 2.0)]
    assert capacity(runs, 1.5) == {"sync": {"on": 8, "on diarize": 1}}


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


async def test_the_diarize_config_goes_over_the_wire(start: Start) -> None:
    """A server without the speaker encoder refuses ``diarize`` as a config error: every diarized bench
    session is counted refused for it, and the same sessions without it are served."""
    source = pieces_of(corpus_mod.load(FIXTURES), "clean", {})
    short = Source(source.rate, source.lead, (min(source.pieces, key=lambda p: p.speech),))
    url = await start(speaker_weights="off")
    scripts = [short.script(i, 2, 1) for i in range(2)]
    refused = await run_sessions(url, scripts, "sync", start_offsets(2, "sync", 0.0), diarize=True)
    assert (refused.sessions, refused.refused) == (2, 2)
    assert dict(refused.errors) == {"refused_invalid_config": 2}
    served = await run_sessions(url, scripts, "sync", start_offsets(2, "sync", 0.0))
    assert (served.sessions, served.refused, served.failed, served.lost) == (2, 0, 0, 0)
