"""Where the server's time went during a bench run: its ``/metrics`` before and after, differenced.

Read with ``prometheus_client``'s text parser. From the difference:

- model time by kind of work (``streamer_model_work_seconds_total{kind}``): finals, speculative finals
  used and wasted, partials, fallback decodes; and its share of the run's wall time;
- padding: ``streamer_model_window_seconds_total{part="padding"}`` against the whole model input window
  (every ``part``; the share needs a part besides padding to be exported);
- final decodes by attempt and utterances by outcome;
- the event loop's lag p99 from the histogram ``streamer_event_loop_lag_seconds`` (None when the server
  does not export it or observed nothing), interpolated inside its bucket as Prometheus'
  ``histogram_quantile`` does.

A metric the server does not export yields empty entries, never an error: servers differ by version.
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

WORK_KINDS = ("final", "speculative_used", "speculative_wasted", "partial", "fallback")
Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

WORK = "streamer_model_work_seconds_total"
WINDOW = "streamer_model_window_seconds_total"
ATTEMPTS = "streamer_decode_attempts_total"
OUTCOMES = "streamer_final_outcomes_total"
LOOP_LAG = "streamer_event_loop_lag_seconds_bucket"


async def scrape(http: aiohttp.ClientSession, base_url: str) -> str:
    """The text of ``GET /metrics``."""
    async with http.get(f"{base_url.rstrip('/')}/metrics") as r:
        r.raise_for_status()
        return await r.text()


def parse(text: str) -> Samples:
    """Every sample by name and labels (``*_created`` timestamps left out)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def diff(before: Samples, after: Samples) -> Samples:
    """``after - before`` per sample (a sample new in ``after`` counts from 0)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The values of sample ``name`` keyed by one of its labels."""
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            key = dict(labels).get(label)
            if key is not None:
                out[key] = out.get(key, 0.0) + value
    return out


def value(samples: Samples, name: str) -> float | None:
    """The sum of sample ``name`` over its labels; None when the server does not export it."""
    found = [v for (sample, _), v in samples.items() if sample == name]
    return sum(found) if found else None


def histogram_quantile(q: float, buckets: dict[str, float]) -> float | None:
    """The ``q`` quantile of cumulative bucket counts keyed by ``le`` (Prometheus' linear interpolation)."""
    bounds = sorted((math.inf if le == "+Inf" else float(le), count) for le, count in buckets.items())
    if not bounds or bounds[-1][0] != math.inf or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if bound == math.inf:  # past the last finite bucket: the most the histogram can say
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return None


def beyond_top(q: float, buckets: dict[str, float]) -> bool:
    """Whether the ``q`` quantile lies past the largest finite bucket bound (it is at least that bound)."""
    finite = [count for le, count in buckets.items() if le != "+Inf"]
    total = buckets.get("+Inf", 0.0)
    return bool(finite) and total > 0 and max(finite) < q * total


def profile(delta: Samples, wall_s: float) -> dict[str, Any]:
    """Where the model's time went during a run of ``wall_s`` seconds, from the metrics' difference."""
    work = by_label(delta, WORK, "kind")
    total = sum(work.values())
    window = by_label(delta, WINDOW, "part")
    padding = window.get("padding", 0.0)
    whole = sum(window.values())
    lag = by_label(delta, LOOP_LAG, "le")
    return {
        "wall_s": round(wall_s, 3),
        "work_s": {
            kind: round(work.get(kind, 0.0), 3)
            for kind in (*WORK_KINDS, *sorted(set(work) - set(WORK_KINDS)))
        },
        "work_total_s": round(total, 3),
        "model_busy_share": round(total / wall_s, 3) if wall_s > 0 and work else None,
        "padding_s": round(padding, 3),
        # the share needs the unpadded input too: a server exporting only part="padding" leaves it unknown
        "padding_share": round(padding / whole, 3) if whole > 0 and set(window) - {"padding"} else None,
        "decode_attempts": {k: int(v) for k, v in sorted(by_label(delta, ATTEMPTS, "attempt").items()) if v},
        "final_outcomes": {k: int(v) for k, v in sorted(by_label(delta, OUTCOMES, "outcome").items()) if v},
        "loop_lag_p99_s": _round(histogram_quantile(0.99, lag)) if lag else None,
        "loop_lag_p99_beyond_top": beyond_top(0.99, lag),  # then the p99 is at least the value above
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def is_quiet(samples: Samples) -> bool:
    """No live session and nothing waiting in any batcher queue."""
    active = value(samples, "streamer_active_sessions") or 0.0
    queued = value(samples, "streamer_queue_depth") or 0.0
    return active == 0 and queued == 0
