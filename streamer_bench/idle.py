"""``streamer bench --idle N``: what connected sessions cost while nobody in them speaks.

N sessions stream in real time, half near-silence (a -90 dBFS dither, as a real converter gives) and half
low background noise (pink, -50 dBFS), while 4 sessions speak their scripts beside them. The server is
watched in three phases: alone (the baseline), with the N idle sessions, and with the 4 speakers added.
Reported: the server's CPU % and RSS in each phase and per idle session (idle phase minus baseline,
over N), the speakers' final latency, refusals and warnings among the idle sessions, the event loop's
lag, and the bench's own CPU: the clients run on the same machine and take from the server's cores.

The client side is kept cheap: one shared pre-generated 100 ms chunk per kind, one HTTP client, and one
task that sends every idle session its chunk each tick (rather than a sleeping task per session).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import Counter
from typing import Any

import aiohttp
import numpy as np

from streamer.client import Stream, StreamerClient
from streamer_bench import server_metrics as sm
from streamer_bench import signals
from streamer_bench.bench import Options, measure, report_header, write
from streamer_bench.latency import Score
from streamer_bench.report import lag_ms
from streamer_bench.script import Source, start_offsets
from streamer_bench.server import BENCH_KEY, ServerProcess, Watch, scrape_text, settle
from streamer_bench.sessions import CHUNK_MS, connect_session, new_http, read_all, run_sessions

SPEAKERS = 4
BASELINE_S = 5.0
IDLE_S = 15.0
CONNECT_CONCURRENCY = 16
NOISE_DBFS = -50.0
KINDS = ("silence", "noise")


def idle_chunks(rate: int = 16000, seed: int = 20261201) -> dict[str, bytes]:
    """One 100 ms PCM16 chunk per kind of idle audio, shared by every idle session."""
    rng = np.random.default_rng(seed)
    n = rate * CHUNK_MS // 1000
    return {
        "silence": signals.to_pcm16(signals.silence(n, rng)).tobytes(),
        "noise": signals.to_pcm16(signals.pink_noise(n, rng) * signals.db_to_gain(NOISE_DBFS)).tobytes(),
    }


class IdleFleet:
    """N idle sessions fed by one ticking task; each has a reader so pings and warnings are handled."""

    def __init__(self, client: StreamerClient, chunks: dict[str, bytes]) -> None:
        self.client, self.chunks = client, chunks
        self.streams: list[tuple[Stream, bytes]] = []
        self.readers: list[asyncio.Task[None]] = []
        self.outcomes = Score()
        self.kinds: Counter[str] = Counter()
        self.late_ticks = 0
        self._ticker: asyncio.Task[None] | None = None

    async def open(self, n: int) -> None:
        """Connect ``n`` sessions (a few at a time); each starts receiving its chunk on the next tick."""
        self._ticker = asyncio.create_task(self._tick())
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(i: int) -> None:
            async with gate:
                stream = await connect_session(self.client, 16000)
            if isinstance(stream, Score):
                self.outcomes.add(stream)
                return
            kind = KINDS[i % len(KINDS)]
            self.kinds[kind] += 1
            self.streams.append((stream, self.chunks[kind]))
            self.readers.append(asyncio.create_task(read_all(stream)))

        await asyncio.gather(*(one(i) for i in range(n)))

    async def _tick(self) -> None:
        t0, k = time.monotonic(), 0
        while True:
            for stream, chunk in list(self.streams):
                if not stream.ws.closed:
                    try:
                        await stream.ws.send_bytes(chunk)
                    except (ConnectionError, aiohttp.ClientError):
                        continue  # the reader sees the close; counted when the fleet closes
            k += 1
            delay = t0 + k * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.late_ticks += 1

    async def close(self) -> None:
        """End every idle session with session.close and wait for its session.closed (30 s at most)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for stream, _ in self.streams:
            if not stream.ws.closed:
                # already closed by the server: its events say why
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    await stream.close_session()
        if self.readers:
            _, late = await asyncio.wait(self.readers, timeout=30)
            for reader in late:
                reader.cancel()
        for stream, _ in self.streams:
            events = [e for _, e in stream.events]
            for e in events:
                if e.get("type") in ("warning", "error"):
                    counter = self.outcomes.warnings if e["type"] == "warning" else self.outcomes.errors
                    counter[str(e.get("code"))] += 1
            if not any(e.get("type") == "session.closed" for e in events):
                self.outcomes.failed += 1
            await stream.ws.close()


def _raise_fd_limit(sessions: int) -> None:
    """Two sockets per session (client and server, both children of this limit) and some to spare."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * sessions + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        top = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


def run_idle(opts: Options, source: Source) -> int:
    """The idle measurement with the first of ``--modes`` and of ``--starts`` (for the speakers)."""
    n = opts.idle or 0
    _raise_fd_limit(n + SPEAKERS)
    with ServerProcess(opts.modes[0], opts.model, opts.device, n + SPEAKERS + 8, opts.server_env) as server:
        idle = asyncio.run(_measure_idle(server, opts, n, source))
    report = {**report_header(opts, source), "idle": idle, "tables": {"idle": idle_table(idle)}}
    print(report["tables"]["idle"])
    write(report, opts.out)
    return 0


async def _measure_idle(server: ServerProcess, opts: Options, n: int, source: Source) -> dict[str, Any]:
    mode, starts = opts.modes[0], opts.starts[0]
    await measure(server, mode, "sync", [source.script(0, 1, 1)], [0.0])  # warm-up
    await settle(server.url)
    async with Watch(server.process) as baseline:
        await asyncio.sleep(BASELINE_S)
    async with new_http() as http, StreamerClient(server.url, api_key=BENCH_KEY, http=http) as client:
        fleet = IdleFleet(client, idle_chunks())
        try:
            began = time.monotonic()
            await fleet.open(n)
            connect_s = time.monotonic() - began
            await asyncio.sleep(2.0)  # the last sessions' first frames through VAD
            t0 = await scrape_text(server.url)
            async with Watch(server.process) as idle:
                await asyncio.sleep(IDLE_S)
            t1 = await scrape_text(server.url)
            scripts = [source.script(i, SPEAKERS, opts.utterances) for i in range(SPEAKERS)]
            async with Watch(server.process) as speaking:
                speakers = await run_sessions(
                    server.url, scripts, starts, start_offsets(SPEAKERS, starts, opts.spread_s)
                )
            t2 = await scrape_text(server.url)
        finally:
            await fleet.close()
    server.check_alive()
    connected = len(fleet.streams)
    out: dict[str, Any] = {
        "mode": mode,
        "idle_sessions": n,
        "connected": connected,
        "kinds": dict(fleet.kinds),
        "noise_dbfs": NOISE_DBFS,
        "connect_s": round(connect_s, 1),
        "idle_refused": fleet.outcomes.refused,
        "idle_failed": fleet.outcomes.failed,
        "idle_warnings": dict(fleet.outcomes.warnings),
        "idle_errors": dict(fleet.outcomes.errors),
        "late_ticks": fleet.late_ticks,
        "baseline": baseline.summary(),
        "idle_phase": idle.summary(),
        "speaking_phase": speaking.summary(),
        "speakers": {"starts": starts, **speakers.summary()},
    }
    if connected:
        out["cpu_percent_per_idle_session"] = round((idle.server_cpu - baseline.server_cpu) / connected, 3)
        out["rss_mb_per_idle_session"] = round((idle.peak_rss - baseline.peak_rss) / 2**20 / connected, 3)
    for name, a, b, wall in (("work_idle", t0, t1, idle.wall_s), ("work_speaking", t1, t2, speaking.wall_s)):
        if a is not None and b is not None:
            out[name] = sm.profile(sm.diff(sm.parse(a), sm.parse(b)), wall)
    return out


def idle_table(idle: dict[str, Any]) -> str:
    base, still, talk = idle["baseline"], idle["idle_phase"], idle["speaking_phase"]
    sp = idle["speakers"]
    rows = [
        "| idle sessions (connected) | server CPU %: alone / idle / +4 speaking | per idle session CPU % "
        "| server RSS MiB: alone / idle | per idle session MiB | bench CPU %: idle / speaking "
        "| speakers finals / sentences | speakers final p50 s | p95 s | loop lag p99 ms (idle) |",
        "|---:|---|---:|---|---:|---|---:|---:|---:|---:|",
        f"| {idle['idle_sessions']} ({idle['connected']}) | {base['cpu_percent']} / {still['cpu_percent']} / "
        f"{talk['cpu_percent']} | {idle.get('cpu_percent_per_idle_session', '–')} | {base['rss_mb']} / "
        f"{still['rss_mb']} | {idle.get('rss_mb_per_idle_session', '–')} | {still['bench_cpu_percent']} / "
        f"{talk['bench_cpu_percent']} | {sp['finals']} / {sp['sentences']} | {sp['lat_p50']} "
        f"| {sp['lat_p95']} | {lag_ms(idle.get('work_idle'))} |",
    ]
    return "\n".join(rows)
