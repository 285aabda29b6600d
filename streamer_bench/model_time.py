"""Where the model's time went during a bench run: the server's ``/metrics`` before and after, differenced.

Model calls and jobs come from ``streamer_batch_size{batcher}``; busy seconds by kind of work (final,
speculative_used, speculative_wasted, partial, fallback) from ``streamer_model_work_seconds_total{kind}``.
The bench stores the result as a run's ``model`` entry; :mod:`streamer_bench.plots` draws it.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

CALLS = "streamer_batch_size_count"
JOBS = "streamer_batch_size_sum"
WORK = "streamer_model_work_seconds_total"


def parse(text: str, batcher: str = "asr") -> dict[str, float]:
    """``calls``, ``jobs`` (of ``batcher``) and ``busy_<kind>`` seconds from a ``/metrics`` text."""
    out = {"calls": 0.0, "jobs": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == CALLS and s.labels.get("batcher") == batcher:
                out["calls"] = s.value
            elif s.name == JOBS and s.labels.get("batcher") == batcher:
                out["jobs"] = s.value
            elif s.name == WORK and "kind" in s.labels:
                out[f"busy_{s.labels['kind']}"] = s.value
    return out


def model_time(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, Any]:
    """A run's model time: wall time, seconds busy per kind of work, model calls and jobs."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    calls = int(delta["calls"])
    return {
        "wall_s": round(wall_s, 3),
        "busy_s": {k[len("busy_") :]: round(v, 3) for k, v in delta.items() if k.startswith("busy_")},
        "calls": calls,
        "jobs": int(delta["jobs"]),
        "mean_batch": round(delta["jobs"] / calls, 2) if calls else None,
    }
