"""What a micro-batcher's model threads did: their busy time, the calls of the last seconds, and how
long final jobs waited. Admission and the metrics read these; the model threads write them."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

# a final's queue wait + model time, as a moving average: this share of each new call's worst
LATENCY_ALPHA = 0.3


class CallLog:
    """Model calls as they finish, thread-safe (every worker records, the event loop reads)."""

    def __init__(self, clock: Callable[[], float], workers: int) -> None:
        self._clock = clock
        self.workers = workers
        self._lock = threading.Lock()
        self.latency_ewma_s = 0.0  # queue wait + model time of recent final jobs
        self.busy_s = 0.0
        self.last_batch_at = 0.0
        self._recent: deque[tuple[float, float]] = deque(maxlen=256)  # (finished at, seconds busy)

    def record(self, elapsed: float, final_waits: Sequence[float]) -> None:
        """A call of ``elapsed`` seconds has finished; ``final_waits``: how long its finals had queued."""
        with self._lock:
            self.last_batch_at = self._clock()
            self._recent.append((self.last_batch_at, elapsed))
            self.busy_s += elapsed
            if final_waits:
                worst = max(final_waits) + elapsed
                self.latency_ewma_s = (1 - LATENCY_ALPHA) * self.latency_ewma_s + LATENCY_ALPHA * worst

    def utilization(self, window_s: float = 3.0) -> float:
        """The fraction of the last ``window_s`` the model threads spent running batches (0..1)."""
        since = self._clock() - window_s
        with self._lock:
            recent = list(self._recent)
        busy = sum(min(d, end - since) for end, d in recent if end > since)
        return min(1.0, busy / (window_s * self.workers))
