"""How late the event loop runs: every session's audio, VAD and messages share it, so its lag is
latency every session pays. A timer asks to wake every ``period_s``; how much later it wakes is observed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from prometheus_client import Histogram


async def watch_loop_lag(histogram: Histogram, period_s: float = 0.1) -> None:
    while True:
        asked = time.monotonic()
        await asyncio.sleep(period_s)
        histogram.observe(max(0.0, time.monotonic() - asked - period_s))


@contextlib.asynccontextmanager
async def loop_lag_watched(histogram: Histogram, period_s: float = 0.1) -> AsyncIterator[None]:
    """Observe the running loop's lag into ``histogram`` for as long as the block runs."""
    task = asyncio.create_task(watch_loop_lag(histogram, period_s), name="loop-lag")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait({task})  # its own cancellation ends it; one aimed at us still propagates
