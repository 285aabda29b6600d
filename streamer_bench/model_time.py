"""Where the model's time went during a bench run: the server's ``/metrics`` before and after, differenced.

The bench stores the result as a run's ``model`` entry; :mod:`streamer_bench.plots` draws it.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

WORK = ("final", "partial", "mixed")


async def snapshot(base_url: str, batcher: str = "asr") -> dict[str, float]:
    """The counters of one batcher that :func:`model_time` needs, from ``GET /metrics``."""
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/metrics") as r:
        r.raise_for_status()
        text = await r.text()
    return parse(text, batcher)


def parse(text: str, batcher: str = "asr") -> dict[str, float]:
    wanted = {"streamer_batch_size_count": "calls", "streamer_batch_size_sum": "jobs"}
    out = dict.fromkeys([*wanted.values(), *(f"busy_{w}" for w in WORK)], 0.0)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("batcher") != batcher:
                continue
            if s.name in wanted:
                out[wanted[s.name]] = s.value
            elif s.name == "streamer_model_seconds_total" and s.labels.get("work") in WORK:
                out[f"busy_{s.labels['work']}"] = s.value
    return out


def model_time(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, Any]:
    """A run's model time: wall time, seconds busy per kind of batch, model calls and jobs."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    calls = int(delta["calls"])
    return {
        "wall_s": round(wall_s, 3),
        "busy_s": {w: round(delta[f"busy_{w}"], 3) for w in WORK},
        "calls": calls,
        "jobs": int(delta["jobs"]),
        "mean_batch": round(delta["jobs"] / calls, 2) if calls else None,
    }
