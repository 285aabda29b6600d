"""What a second of audio costs the model on this machine, measured rather than assumed.

The same build runs on an AVX-512 Xeon, an AVX2-only EPYC and a GPU; the model's seconds per second of
audio differ between them by a factor, and so does the number of live sessions a server can hold. At
start-up :func:`calibrate` times the model on batches of the sizes it will form; from then on every batch
the batcher runs updates the figure (:class:`CostMeter`), so admission reads what this CPU does now,
contention included, before any session has streamed long enough to be measured on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from streamer.pipeline.asr import AsrEngine, AsrRequest
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.batchtypes import CostMeter

# the batch sizes calibration times; and the length of its probes (the shortest length bucket)
PROBE_SIZES = (1, 4)
PROBE_S = 5.0


def calibrate(
    engine: AsrEngine,
    meter: CostMeter,
    run_batch: Callable[[AsrEngine, Sequence[AsrRequest]], object] | None = None,
    sizes: Sequence[int] = PROBE_SIZES,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[int, float]:
    """Time the model on batches of ``sizes`` probes of low noise (blocking: call it in a thread) and
    seed ``meter``; returns model seconds per input second by size. The first call also warms the model up,
    so it is run once untimed."""
    rng = np.random.default_rng(0)
    probe = (rng.standard_normal(int(PROBE_S * MODEL_RATE)) * 0.003).astype(np.float32)
    run = run_batch or (lambda e, requests: e.transcribe_batch(requests))
    run(engine, [AsrRequest(probe)])
    costs = {}
    for size in sizes:
        requests = [AsrRequest(probe) for _ in range(size)]
        started = clock()
        run(engine, requests)
        elapsed = clock() - started
        meter.record(size, size * PROBE_S, elapsed, typical=False)
        costs[size] = elapsed / (size * PROBE_S)
    return costs
