"""What a micro-batcher shares with its callers: its breaker's shape, the errors it tells apart, and what
it reports per model call (metrics, the benchmark) and in one snapshot (admission)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Protocol

from streamer.errors import ConfigError, ModelUnavailableError

# what a model call raises for a bad request (an unknown language, task or token), not a failed model
REQUEST_ERRORS = (ValueError, KeyError)


class RequestRefusedError(ConfigError):
    """The model refused one request (its session's config): that request fails, no other."""


class Breaker(Protocol):
    def allow(self) -> bool: ...
    def record_success(self) -> None: ...
    def record_failure(self) -> None: ...
    def retry_after(self) -> float: ...


class GuardedBreaker:
    """A batcher's breaker (or none) behind one lock: its model threads and its watchdog all use it."""

    def __init__(self, name: str, breaker: Breaker | None) -> None:
        self.name = name
        self.breaker = breaker
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise ``ModelUnavailableError`` while the breaker is open. ``allow()`` may let a half-open
        probe through: the batch that runs next is the probe."""
        if self.breaker is None:
            return
        with self._lock:
            if not self.breaker.allow():
                raise ModelUnavailableError(
                    f"the {self.name} model is unavailable", retry_after=self.breaker.retry_after()
                )

    def record(self, *, success: bool) -> None:
        if self.breaker is None:
            return
        with self._lock:
            if success:
                self.breaker.record_success()
            else:
                self.breaker.record_failure()


@dataclass
class BatchStats:
    """What the batcher reports per model call (for metrics and the benchmark)."""

    name: str
    size: int
    finals: int
    seconds: float
    queue_wait_s: float


@dataclass(frozen=True)
class BatcherSnapshot:
    """A batcher's load as admission control reads it (public numbers, taken in one step)."""

    hung: bool
    finals_pending: int  # final jobs holding a slot (queued or running)
    max_pending_finals: int
    latency_ewma_s: float
    last_batch_at: float  # the batcher's clock; 0.0 before the first batch
    workers: int = 1  # model calls that can run at once: the model's capacity is this many seconds a second
    # model seconds (of one worker) per second of model input (padded windows), at the batch sizes the
    # batcher forms;
    # None until measured (at start-up, then from every batch: calibration.CostMeter)
    cost_per_input_s: float | None = None
    # what the workers running at once are worth in calls running alone, beside other work on the machine
    # (calibration.CpuShare.parallel; at most workers); None: one worker each
    cores: float | None = None


# batch sizes are counted in powers of two: cost per input second falls with the batch, not in steps of one
SIZE_CLASSES = (1, 2, 4, 8, 16, 32)


def size_class(size: int) -> int:
    """The largest power-of-two class at most ``size`` (1 for anything smaller)."""
    return max((c for c in SIZE_CLASSES if c <= size), default=1)


class CostMeter:
    """Model seconds per second of model input, per batch-size class, as moving averages; and the batch
    size the batcher typically forms. The input is the padded window, not the audio: a 1 s partial in a
    5 s bucket costs what 5 s of speech does. Thread-safe: model threads record, the loop reads."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self._cost: dict[int, float] = {}
        self._typical_size = 0.0
        self._lock = threading.Lock()

    def record(self, size: int, input_s: float, model_s: float, *, typical: bool = True) -> None:
        """One model call: ``size`` jobs, ``input_s`` seconds of model input among them, ``model_s`` long.
        ``typical``: whether it counts toward the typical batch size (calibration probes do not)."""
        if size <= 0 or input_s <= 0:
            return
        per_s = model_s / input_s
        cls = size_class(size)
        with self._lock:
            old = self._cost.get(cls)
            self._cost[cls] = per_s if old is None else (1 - self.alpha) * old + self.alpha * per_s
            if typical:
                a = self.alpha if self._typical_size else 1.0
                self._typical_size = (1 - a) * self._typical_size + a * size

    def cost(self, size: float | None = None) -> float | None:
        """Seconds per input second at batches of ``size`` jobs (default: the typical size formed), read
        from the nearest class measured; None before anything was."""
        with self._lock:
            if not self._cost:
                return None
            want = size_class(round(size if size is not None else self._typical_size or 1))
            nearest = min(self._cost, key=lambda c: (abs(math.log2(c) - math.log2(want)), -c))
            return self._cost[nearest]
