"""``streamer bench``: live sessions of real speech against a real server process, until latency breaks.

For every techniques mode (``on``: batching, length buckets, early finals; ``off``) a server runs as its
own process, so its CPU and memory are measured apart from the clients. For every start pattern (``sync``:
all sessions within 0.1 s, the worst case; ``spread``: evenly over ``--spread-s``) and every N, N sessions
stream their scripts (:mod:`streamer_bench.script`: the realistic corpus by default) in real time over
protocol v1. Scored per run (:mod:`streamer_bench.latency`): finals / sentences, lost and split sentences,
refusals, final latency p50/p95/max, first partial p50, WER, warnings and errors by code, server CPU and
peak RSS, the bench's own CPU; and from the server's ``/metrics`` (:mod:`streamer_bench.server_metrics`)
where the model's time went and the event loop's lag.

Capacity, per start pattern and mode: the largest N such that it and every smaller N of the sweep kept
final p95 within ``--bound`` with every sentence's final delivered (none lost, no session refused or
broken off). A mode's sweep for a start pattern stops once p95 passes 4x the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from streamer.client import ClientError, Stream, StreamerClient
from streamer_bench import model_time
from streamer_bench import server_metrics as sm
from streamer_bench.latency import Score, score_session
from streamer_bench.report import capacity, capacity_ratio, markdown_tables
from streamer_bench.report import machine as machine  # re-exported: bench_mt reads it from here
from streamer_bench.script import (
    ESPEAK_DATA,
    STARTS,
    InputError,
    Script,
    Source,
    corpus_source,
    espeak_source,
    start_offsets,
)

DATA = ESPEAK_DATA  # the espeak clips shipped with the package (``--input espeak``)
BENCH_KEY = "bench-key-0123456789abcdef0123456789abcdef"
CHUNK_MS = 100
DRAIN_TIMEOUT_S = 90.0  # after session.close: the rest of the finals, then session.closed
SETTLE_TIMEOUT_S = 30.0  # between runs: until no session is live and no batcher queue holds work
STOP_FACTOR = 4.0


def load_speech(data: Path = DATA) -> list[tuple[bytes, str]]:
    """The espeak utterances with their reference text (16 kHz PCM16)."""
    return [(p.audio[: p.speech].tobytes(), p.text) for p in espeak_source(data).pieces]


class ServerProcess:
    """``streamer serve`` in a child process on a free port, with the bench's key and settings."""

    def __init__(
        self, mode: str, model: str, device: str, max_sessions: int = 64, env: dict[str, str] | None = None
    ) -> None:
        self.mode, self.model, self.device = mode, model, device
        self.max_sessions = max_sessions
        self.extra_env = env or {}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> psutil.Process:
        if self.proc is None:
            raise RuntimeError("the server is not running")
        return psutil.Process(self.proc.pid)

    def __enter__(self) -> ServerProcess:
        env = dict(os.environ)
        env.update(
            {
                "STREAMER_API_KEYS": BENCH_KEY,
                "STREAMER_ASR_MODEL": self.model,
                "STREAMER_DEVICE": self.device,
                "STREAMER_BATCHING": "true" if self.mode == "on" else "false",
                "STREAMER_MAX_SESSIONS": str(self.max_sessions),
                # one key stands for every user here: the per-key start rate is abuse control, not capacity
                "STREAMER_SESSION_RATE_PER_KEY_PER_MIN": "0",
                "STREAMER_LOG_LEVEL": "WARNING",
                **self.extra_env,
            }
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "serve", "--port", str(self.port)], env=env
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode} while starting")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError("the server did not start within 180 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {self.proc.returncode} during the bench")


# --- sessions


class StartGate:
    """Synchronized starts: the audio begins once every session has connected or been refused."""

    def __init__(self, sessions: int) -> None:
        self._left = sessions
        self._open: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def arrive(self) -> None:
        self._left -= 1
        if self._left <= 0 and not self._open.done():
            self._open.set_result(time.monotonic() + 0.05)

    async def opened(self) -> float:
        return await asyncio.shield(self._open)


def new_http(sessions: int) -> aiohttp.ClientSession:
    """One HTTP client for every session of a run (aiohttp's default pool stops at 100 connections)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def connect_session(client: StreamerClient, rate: int) -> Stream | Score:
    """A live stream, or the Score of a session that never started (refused or failed)."""
    try:
        return await client.connect({"sample_rate": rate, "language": "en"})
    except ClientError as e:
        return Score(sessions=1, refused=1, errors=Counter([f"refused_{e.code}"]))
    except aiohttp.WSServerHandshakeError as e:
        return Score(sessions=1, refused=1, errors=Counter([f"refused_{e.status}"]))
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return Score(sessions=1, failed=1, errors=Counter([f"connect_{type(e).__name__}"]))


async def speak(
    client: StreamerClient, script: Script, connect_at: float, gate: StartGate | None, offset: float
) -> Score:
    """One session: connect at ``connect_at``, stream the script in real time, read every event, score."""
    await asyncio.sleep(max(0.0, connect_at - time.monotonic()))
    try:
        stream = await connect_session(client, script.rate)
    finally:
        if gate is not None:
            gate.arrive()
    if isinstance(stream, Score):
        stream.sentences = len(script.lines)
        return stream
    begin = (await gate.opened()) + offset if gate is not None else time.monotonic()
    broke: str | None = None
    async with stream:
        reader = asyncio.create_task(read_all(stream))
        times, broke = await _send(stream, script, begin, reader)
        try:
            await asyncio.wait_for(reader, DRAIN_TIMEOUT_S)
        except TimeoutError:
            broke = broke or "bench_timeout"
    score = score_session(script.lines, times, CHUNK_MS, stream.events)
    if broke is None and not any(e.get("type") == "session.closed" for _, e in stream.events):
        broke = f"closed_{stream.close_code}"
    if broke is not None:
        score.failed = 1
        score.errors[broke] += 1
    return score


async def _send(
    stream: Stream, script: Script, begin: float, reader: asyncio.Task[None]
) -> tuple[list[float], str | None]:
    """Chunks paced from ``begin``; the times they went, and why sending stopped early (None: it did not)."""
    step = script.rate * CHUNK_MS // 1000 * 2
    times: list[float] = []
    try:
        for k, i in enumerate(range(0, len(script.pcm), step)):
            delay = begin + k * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if reader.done():
                return times, f"closed_{stream.close_code}"
            await stream.ws.send_bytes(script.pcm[i : i + step])
            times.append(time.monotonic())
        await stream.close_session()
    except (ConnectionError, aiohttp.ClientError) as e:
        return times, f"send_{type(e).__name__}"
    return times, None


async def read_all(stream: Stream) -> None:
    async for _ in stream:
        pass


async def run_sessions(url: str, scripts: Sequence[Script], starts: str, offsets: Sequence[float]) -> Score:
    """Every script as its own session, started as ``starts`` says; the sum of their scores."""
    gate = StartGate(len(scripts)) if starts == "sync" else None
    t0 = time.monotonic() + 0.1
    async with new_http(len(scripts)) as http, StreamerClient(url, api_key=BENCH_KEY, http=http) as client:
        scores = await asyncio.gather(
            *(
                speak(client, s, t0 if gate else t0 + offsets[i], gate, offsets[i] if gate else 0.0)
                for i, s in enumerate(scripts)
            )
        )
    total = Score()
    for score in scores:
        total.add(score)
    return total


# --- one run with the server watched


class Watch:
    """The server's and the bench's CPU, the server's peak RSS (and RSS every 10 s), over a block."""

    def __init__(self, server: psutil.Process) -> None:
        self.server, self.me = server, psutil.Process()
        self.peak_rss = 0
        self.timeline: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self.server.cpu_percent(None)
        self.me.cpu_percent(None)
        self.t0 = time.monotonic()
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.wall_s = time.monotonic() - self.t0
        self.server_cpu = self.server.cpu_percent(None)
        self.bench_cpu = self.me.cpu_percent(None)
        if self._task is not None:
            self._task.cancel()
        self.peak_rss = max(self.peak_rss, self.server.memory_info().rss)

    async def _sample(self) -> None:
        last = -1e9
        while True:
            rss = self.server.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                self.timeline.append((round(last - self.t0, 1), round(rss / 2**20, 1)))
            await asyncio.sleep(0.5)

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": round(self.wall_s, 1),
            "cpu_percent": round(self.server_cpu, 1),
            "rss_mb": round(self.peak_rss / 2**20, 1),
            "bench_cpu_percent": round(self.bench_cpu, 1),
        }


async def settle(url: str) -> sm.Samples | None:
    """Wait (up to 30 s) until the server is quiet; its metrics then, or None if it exports none."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                samples = sm.parse(await sm.scrape(http, url))
            except (aiohttp.ClientError, OSError, ValueError):
                return None
            if sm.is_quiet(samples) or time.monotonic() > deadline:
                return samples
            await asyncio.sleep(0.5)


async def scrape_text(url: str) -> str | None:
    try:
        async with aiohttp.ClientSession() as http:
            return await sm.scrape(http, url)
    except (aiohttp.ClientError, OSError):
        return None


async def measure(
    server: ServerProcess, mode: str, starts: str, scripts: Sequence[Script], offsets: Sequence[float]
) -> dict[str, Any]:
    """One run: the sessions, the server watched, and the server's metrics before and after."""
    await settle(server.url)
    before = await scrape_text(server.url)
    async with Watch(server.process) as watch:
        score = await run_sessions(server.url, scripts, starts, offsets)
    after = await scrape_text(server.url)
    server.check_alive()
    row: dict[str, Any] = {"mode": mode, "starts": starts, **score.summary(), **watch.summary()}
    row["expected"] = row["sentences"]  # the name plots and older readers use
    row["rss_timeline"] = watch.timeline
    if before is not None and after is not None:
        row["work"] = sm.profile(sm.diff(sm.parse(before), sm.parse(after)), watch.wall_s)
        # what the plots read: model calls and jobs, and busy seconds by kind of work
        row["model"] = model_time.model_time(model_time.parse(before), model_time.parse(after), watch.wall_s)
        row["model"]["busy_s"] = row["work"]["work_s"]
    return row


# --- options and the sweep


@dataclass(frozen=True)
class Options:
    """The command line, checked once before anything starts."""

    counts: list[int]
    modes: list[str]
    starts: list[str]
    spread_s: float
    utterances: int
    bound: float
    server_env: dict[str, str]
    model: str
    device: str
    idle: int | None = None
    soak: float = 0.0
    out: str | None = None


def parse_options(args: argparse.Namespace) -> Options:
    """Options from ``streamer bench``'s arguments; raises :class:`InputError` saying what is wrong."""
    if args.utterances < 1 or args.spread_s < 0 or args.bound <= 0 or args.soak < 0:
        raise InputError("--utterances must be at least 1, --spread-s and --soak at least 0, --bound above 0")
    if args.idle is not None and args.idle < 1:
        raise InputError("--idle takes the number of idle sessions (at least 1)")
    env = {}
    for item in args.server_env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("STREAMER_"):
            raise InputError(f"--server-env takes STREAMER_NAME=VALUE, not {item!r}")
        env[key] = value
    return Options(
        counts=_counts(args.sessions),
        modes=parse_list(args.modes, ("on", "off")),
        starts=parse_list(args.starts, STARTS),
        spread_s=args.spread_s,
        utterances=args.utterances,
        bound=args.bound,
        server_env=env,
        model=args.model,
        device=args.device,
        idle=args.idle,
        soak=args.soak,
        out=args.out,
    )


def parse_list(text: str, allowed: Sequence[str]) -> list[str]:
    items = list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    if not items or any(x not in allowed for x in items):
        raise InputError(f"expected a comma-separated list of {', '.join(allowed)}, not {text!r}")
    return items


def _counts(text: str) -> list[int]:
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as e:
        raise InputError(f"--sessions takes comma-separated whole numbers, not {text!r}") from e
    if not counts or counts[0] < 1:
        raise InputError("--sessions: every count must be at least 1")
    return counts


def load_source(args: argparse.Namespace) -> Source:
    if args.input == "espeak":
        return espeak_source()
    return corpus_source(args.condition, args.sentences, args.corpus)


def stop_here(row: dict[str, Any], bound: float) -> bool:
    """Past 4x the bound (or nothing delivered at all), a larger N only takes longer to say the same."""
    p95: float | None = row["lat_p95"]
    if p95 is None:
        return int(row["sessions"]) > 1
    return p95 > STOP_FACTOR * bound


async def _sweep(server: ServerProcess, mode: str, opts: Options, source: Source) -> list[dict[str, Any]]:
    rows = []
    await measure(server, mode, "sync", [source.script(0, 1, 1)], [0.0])  # warm-up: first calls, caches
    for starts in opts.starts:
        for n in opts.counts:
            scripts = [source.script(i, n, opts.utterances) for i in range(n)]
            row = await measure(server, mode, starts, scripts, start_offsets(n, starts, opts.spread_s))
            row.pop("rss_timeline")
            rows.append(row)
            print(json.dumps(row), flush=True)
            if stop_here(row, opts.bound):
                break
    return rows


def run_bench(args: argparse.Namespace) -> int:
    """``streamer bench``: the sweep (or ``--soak``, or ``--idle``); 2 on bad options or missing input."""
    try:
        opts = parse_options(args)
        source = load_source(args)
        if opts.idle:
            from streamer_bench.idle import run_idle

            return run_idle(opts, source)
        if opts.soak:
            return run_soak(opts, source)
        return run_sweep(opts, source)
    except InputError as e:
        print(f"streamer bench: {e}", file=sys.stderr)
        return 2


def run_sweep(opts: Options, source: Source) -> int:
    report = report_header(opts, source)
    report.update({"starts": opts.starts, "spread_s": opts.spread_s, "runs": []})
    for mode in opts.modes:
        sessions = max(64, opts.counts[-1] + 4)
        with ServerProcess(mode, opts.model, opts.device, sessions, opts.server_env) as server:
            report["runs"] += asyncio.run(_sweep(server, mode, opts, source))
    report["capacity"] = capacity(report["runs"], opts.bound)
    report["capacity_ratio"] = capacity_ratio(report["capacity"])
    report["tables"] = markdown_tables(report)
    for table in report["tables"].values():
        print(table, end="\n\n")
    write(report, opts.out)
    return 0


def write(report: dict[str, Any], out: str | None) -> None:
    if out:
        Path(out).write_text(json.dumps(report, indent=2) + "\n")


def report_header(opts: Options, source: Source) -> dict[str, Any]:
    return {
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": opts.model,
        "device": opts.device,
        "bound_s": opts.bound,
        "input": source.info,
        "utterances": opts.utterances,
        "server_env": opts.server_env,
    }


def run_soak(opts: Options, source: Source) -> int:
    """N sessions speaking for ``--soak`` minutes (spread starts): delivery and memory over time."""
    n = opts.counts[-1]
    piece_s = sum(p.audio.size for p in source.pieces) / len(source.pieces) / source.rate
    scripts = [source.script(i, n, max(1, int(opts.soak * 60 / piece_s))) for i in range(n)]
    offsets = start_offsets(n, "spread", opts.spread_s)
    with ServerProcess("on", opts.model, opts.device, max(64, n + 4), opts.server_env) as server:
        result = asyncio.run(measure(server, "on", "spread", scripts, offsets))
    result["minutes"] = opts.soak
    report = {**report_header(opts, source), "soak": result}
    print(json.dumps(report), flush=True)
    write(report, opts.out)
    return 0 if result["lost"] == 0 and result["refused"] == 0 and result["failed"] == 0 else 1
