"""The loop-lag watch sees a blocked event loop."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram

from streamer.looplag import loop_lag_watched


async def test_a_blocked_loop_shows_as_lag() -> None:
    histogram = Histogram("lag", "lag", buckets=(0.01, 0.1, 1.0), registry=CollectorRegistry())
    async with loop_lag_watched(histogram, period_s=0.02):
        await asyncio.sleep(0.1)
        time.sleep(0.25)  # noqa: ASYNC251 - the point: work on the loop, every session waits this long
        await asyncio.sleep(0.1)
    samples = {s.name: s.value for s in histogram.collect()[0].samples if not s.labels.get("le")}
    assert samples["lag_count"] >= 3
    assert samples["lag_sum"] >= 0.2
