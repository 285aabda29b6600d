"""``streamer bench --encoding webm|ogg``: the recorder's pieces, their timing truth, and sessions that send
them over protocol v1 (a fake model, real VAD, the server's own container decoder)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import base_url, make_settings

from streamer.app import create_app
from streamer.cli import build_parser
from streamer.pipeline.streaming import LIVE_CONTAINERS, ContainerDecoder, Expect
from streamer.pipeline.vad import SileroVad
from streamer_bench import corpus as corpus_mod
from streamer_bench.bench import parse_options
from streamer_bench.recording import GRID_MS, PIECE_MS, Recording, record
from streamer_bench.report import capacity
from streamer_bench.script import FIXTURES, InputError, Script, Source, pieces_of, start_offsets
from streamer_bench.server import BENCH_KEY
from streamer_bench.sessions import run_sessions

Start = Callable[..., Awaitable[str]]
RATE = 16000


@pytest.fixture(scope="module")
def source() -> Source:
    """The corpus fixtures' two shortest sentences."""
    full = pieces_of(corpus_mod.load(FIXTURES), "clean", {})
    return Source(full.rate, full.lead, tuple(sorted(full.pieces, key=lambda p: p.speech)[:2]))


@pytest.fixture(scope="module")
def script(source: Source) -> Script:
    return source.script(0, 1, 2)


def decode_pieces(recording: Recording) -> tuple[np.ndarray, list[float]]:
    """The server's streaming decoder fed one piece at a time: all the audio, and how many ms of it had
    come out after each piece."""
    expect = Expect(frozenset({recording.container}))
    decoder = ContainerDecoder(RATE, 1, expect=expect, allowed=LIVE_CONTAINERS)
    out, after = bytearray(), []
    try:
        for piece in recording.pieces:
            pcm = decoder.decode(piece)
            while pcm:
                out += pcm
                pcm = decoder.decode(b"")
            after.append(len(out) / 2 / (RATE / 1000))
        while pcm := decoder.flush():
            out += pcm
    finally:
        decoder.close()
    return np.frombuffer(bytes(out), "<i2"), after


@pytest.mark.parametrize("container", ["webm", "ogg"])
def test_the_decoded_audio_keeps_the_scripts_clock(script: Script, container: str) -> None:
    decoded, _ = decode_pieces(record(script, container))
    source = np.frombuffer(script.pcm, "<i2").astype(float)
    assert decoded.size == source.size
    decoded_f = decoded.astype(float)

    def match(shift: int) -> float:  # decoded[t + shift] against source[t]
        a = source[max(0, -shift) : source.size - max(0, shift)]
        b = decoded_f[max(0, shift) : decoded_f.size - max(0, -shift)]
        return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))

    # the sentence timing truth holds on the decoded audio: no shift lines them up better than none
    assert match(0) > 0.99
    assert all(match(0) > match(shift) for shift in (-16, -8, -2, -1, 1, 2, 8, 16))


@pytest.mark.parametrize("container", ["webm", "ogg"])
def test_each_piece_completes_the_audio_its_cells_promise(script: Script, container: str) -> None:
    recording = record(script, container)
    _, decoded_ms = decode_pieces(recording)
    assert len(recording.pieces) == pytest.approx(script.duration_s * 1000 / PIECE_MS, abs=1)
    for k, got in enumerate(decoded_ms):
        promised = sum(1 for piece in recording.cells if piece <= k) * float(GRID_MS)
        # the server cannot decode what a piece does not hold; it holds back at most its resampler's tail
        assert promised - 5 <= got <= promised + float(GRID_MS), (k, promised, got)
    starts = np.array(recording.starts_ms)
    assert starts[0] == 0 and np.all(np.diff(starts) > 0)
    assert np.all(np.abs(np.diff(starts) - PIECE_MS) <= 20)  # a piece is 250 ms, to an Opus packet


def test_cell_times_are_the_send_times_of_the_pieces_sent(script: Script) -> None:
    recording = record(script, "webm")
    sent = [100.0 + k for k in range(len(recording.pieces))]
    times = recording.cell_times(sent)
    assert len(times) == len(recording.cells) == round(script.duration_s * 1000 / float(GRID_MS))
    assert times[0] == 100.0 and times[-1] == sent[-1]
    cut = recording.cell_times(sent[:3])  # broke off after three pieces: their cells only
    assert cut == times[: len(cut)] and set(cut) == {100.0, 101.0, 102.0}


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


@pytest.mark.parametrize("container", ["webm", "ogg"])
async def test_container_sessions_stream_in_real_time_and_every_sentence_gets_a_timed_final(
    start: Start, source: Source, container: str
) -> None:
    url = await start()
    scripts = [source.script(i, 2, 1) for i in range(2)]
    recordings = [record(s, container) for s in scripts]
    score = await run_sessions(url, scripts, "sync", start_offsets(2, "sync", 0.0), recordings)
    summary = score.summary()
    assert (summary["sessions"], summary["refused"], summary["failed"]) == (2, 0, 0), summary["errors"]
    assert (summary["sentences"], summary["lost"], summary["stray_finals"]) == (2, 0, 0)
    assert len(score.latencies) == 2 and all(0 < lat < 3 for lat in score.latencies)
    assert summary["start_spread_s"] < 0.25
    assert summary["wer"] is not None and summary["wer"] > 0  # the fake model says "hello world"


def bench_args(*extra: str) -> Any:
    return build_parser().parse_args(["bench", *extra])


def test_the_encoding_option_takes_a_list_and_refuses_what_the_bench_cannot_send() -> None:
    assert parse_options(bench_args()).encodings == ("pcm16",)
    assert parse_options(bench_args("--encoding", "pcm16,webm")).encodings == ("pcm16", "webm")
    for bad in (["--encoding", "mp3"], ["--encoding", ""], ["--encoding", "webm", "--idle", "10"]):
        with pytest.raises(InputError):
            parse_options(bench_args(*bad))


def test_capacity_keeps_each_encoding_apart() -> None:
    def run(encoding: str, n: int, p95: float) -> dict[str, Any]:
        row = {"mode": "on", "starts": "spread", "sessions": n, "refused": 0, "failed": 0, "lost": 0}
        return {**row, "encoding": encoding, "lat_p95": p95}

    runs = [run("pcm16", 8, 0.5), run("pcm16", 16, 0.9), run("webm", 8, 0.6), run("webm", 16, 2.0)]
    assert capacity(runs, 1.5) == {"spread": {"on": 16, "on webm": 8}}
