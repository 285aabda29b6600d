"""The server under test: ``streamer serve`` as a child process, and what it costs while a block runs.

A separate process, so its CPU and memory are measured apart from the bench's clients.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import aiohttp
import psutil

from streamer_bench import server_metrics as sm

BENCH_KEY = "bench-key-0123456789abcdef0123456789abcdef"
SETTLE_TIMEOUT_S = 30.0  # between runs: until no session is live and no batcher queue holds work


class ServerError(RuntimeError):
    """The server under test did not start or exited: the runs so far stand, the rest cannot be had."""


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
            raise ServerError("the server is not running")
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
                # every client here is 127.0.0.1: the per-address connection cap (abuse control, 64) would
                # otherwise measure itself, not the server's capacity
                "STREAMER_MAX_CONNECTIONS_PER_ADDRESS": str(max(64, 2 * self.max_sessions)),
                "STREAMER_LOG_LEVEL": "WARNING",
                **self.extra_env,
            }
        )
        # the server's own lines go to stderr (fd 2, whatever sys.stderr is now): stdout carries results only
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "serve", "--port", str(self.port)], env=env, stdout=2
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"the server exited with code {self.proc.returncode} while starting")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise ServerError("the server did not start within 180 s")

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
            raise ServerError(f"the server exited with code {self.proc.returncode} during the bench")


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
