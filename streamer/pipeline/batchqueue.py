"""The micro-batcher's queue discipline, pure and clock-driven so it can be tested without threads.

- Finals are never dropped: they wait in FIFO order and always go before partials.
- Partials are coalesced latest-wins per session: a new partial replaces the one still waiting, and a
  partial that is older than its ``stale_after`` when its turn comes is dropped.
- A batch holds jobs with one group key (what must be equal inside one model call); it is flushed when it
  is full or when the oldest waiting job has waited ``max_wait_s``.
- Model time is shared fairly between tenants (API keys): a batch is led by the waiting final of the
  tenant that used the model least recently (:class:`TenantUsage`), and filled round robin over the
  tenants in that order, each tenant's finals in FIFO order. A key whose sessions run the fallback ladder
  on every utterance waits behind the others instead of pushing them back.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")


class Priority(enum.IntEnum):
    FINAL = 0
    PARTIAL = 1


@dataclass(eq=False)
class Job(Generic[P]):
    session_id: str
    key: Hashable
    payload: P
    priority: Priority
    submitted: float
    stale_after: float | None = None
    tenant: str = ""  # whose model time this is (the session's API key)
    ticket: object = field(default=None, repr=False)  # the caller's handle (e.g. a future)
    trace: object = field(default=None, repr=False)  # the submitter's span (streamer.tracing.Handle)

    @property
    def final(self) -> bool:
        return self.priority is Priority.FINAL

    def is_stale(self, now: float) -> bool:
        return self.stale_after is not None and now - self.submitted > self.stale_after


@dataclass
class Batch(Generic[P]):
    key: Hashable
    jobs: list[Job[P]]
    dropped: list[Job[P]]  # stale partials removed while forming this batch


class TenantUsage:
    """Model seconds each tenant used recently, decaying by half every ``half_life_s``. Thread-safe: the
    model thread charges and reads it (ordering a batch), others may read it too."""

    def __init__(
        self,
        half_life_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        max_tenants: int = 10_000,
    ) -> None:
        self.half_life_s = half_life_s
        self._clock = clock
        self.max_tenants = max_tenants
        self._used: dict[str, tuple[float, float]] = {}  # tenant -> (seconds, as of)
        self._lock = threading.Lock()

    def charge(self, tenant: str, seconds: float) -> None:
        now = self._clock()
        with self._lock:
            if tenant not in self._used and len(self._used) >= self.max_tenants:
                # forget the lightest (a forgotten tenant starts again at zero, which favours it a little)
                del self._used[min(self._used, key=lambda t: self._decayed(t, now))]
            self._used[tenant] = (self._decayed(tenant, now) + seconds, now)

    def usage(self, tenant: str) -> float:
        """The tenant's recent model seconds (decayed)."""
        with self._lock:
            return self._decayed(tenant, self._clock())

    def _decayed(self, tenant: str, now: float) -> float:
        seconds, since = self._used.get(tenant, (0.0, now))
        return seconds * math.exp2(-(now - since) / self.half_life_s)


class BatchQueue(Generic[P]):
    """Pending jobs and the rule that turns them into batches."""

    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        max_partials: int | None = None,
        usage: Callable[[str], float] | None = None,
    ) -> None:
        self.max_batch = max_batch
        self._usage = usage  # a tenant's recent model time (TenantUsage.usage); None: FIFO
        # partials are cheap to skip but not to run: a batch full of them delays the finals that arrive
        # while it runs, so only part of a batch may be partials
        self.max_partials = max(1, max_batch // 4) if max_partials is None else max_partials
        self.max_wait_s = max_wait_s
        self._finals: list[Job[P]] = []
        self._partials: OrderedDict[str, Job[P]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._finals) + len(self._partials)

    @property
    def finals_waiting(self) -> int:
        return len(self._finals)

    @property
    def partials_waiting(self) -> int:
        return len(self._partials)

    def push(self, job: Job[P]) -> Job[P] | None:
        """Queue a job. Returns the partial it replaced (coalesced), if any."""
        if job.priority is Priority.FINAL:
            self._finals.append(job)
            return None
        replaced = self._partials.pop(job.session_id, None)
        self._partials[job.session_id] = job
        return replaced

    def withdraw(self, job: Job[P]) -> bool:
        """Take back a final nobody waits for any more (a cancelled speculation); False if not queued."""
        for i, queued in enumerate(self._finals):
            if queued is job:
                del self._finals[i]
                return True
        return False

    def discard_partial(self, session_id: str) -> Job[P] | None:
        """Forget a session's waiting partial (its utterance ended or the session left)."""
        return self._partials.pop(session_id, None)

    def drain(self) -> list[Job[P]]:
        """Remove and return everything waiting (the model cannot run it)."""
        jobs = [*self._finals, *self._partials.values()]
        self._finals, self._partials = [], OrderedDict()
        return jobs

    def _oldest(self) -> float | None:
        times = [j.submitted for j in self._finals[:1]] + [j.submitted for j in self._partials.values()]
        return min(times) if times else None

    def wait_time(self, now: float) -> float | None:
        """Seconds until the next batch is due: 0 = now, None = nothing queued."""
        oldest = self._oldest()
        if oldest is None:
            return None
        if len(self._finals) >= self.max_batch or len(self) >= self.max_batch:
            return 0.0
        return max(0.0, oldest + self.max_wait_s - now)

    def take(self, now: float, *, force: bool = False) -> Batch[P] | None:
        """The next batch if one is due (or ``force``), else None."""
        wait = self.wait_time(now)
        if wait is None or (wait > 0 and not force):
            return None
        dropped = [j for j in self._partials.values() if j.is_stale(now)]
        for job in dropped:
            del self._partials[job.session_id]
        if self._finals:
            jobs = self._fair_finals()
            key = jobs[0].key
        elif self._partials:
            jobs, key = [], next(iter(self._partials.values())).key
        else:
            return Batch(key=None, jobs=[], dropped=dropped)
        partials = 0
        for sid, job in list(self._partials.items()):
            if len(jobs) >= self.max_batch or partials >= self.max_partials:
                break
            if job.key == key:
                jobs.append(job)
                del self._partials[sid]
                partials += 1
        return Batch(key=key, jobs=jobs, dropped=dropped)

    def _fair_finals(self) -> list[Job[P]]:
        """Take the finals of the next batch: led by the least-served tenant's oldest final, then one
        final of that group key per tenant in turn, least-served tenants first."""
        queues: dict[str, list[Job[P]]] = {}
        for job in self._finals:
            queues.setdefault(job.tenant, []).append(job)
        usage = self._usage
        order = sorted(queues, key=lambda t: (usage(t) if usage else 0.0, queues[t][0].submitted))
        key = queues[order[0]][0].key
        lanes = [[j for j in queues[t] if j.key == key] for t in order]
        jobs: list[Job[P]] = []
        while len(jobs) < self.max_batch and any(lanes):
            for lane in lanes:
                if lane and len(jobs) < self.max_batch:
                    jobs.append(lane.pop(0))
        taken = {id(j) for j in jobs}
        self._finals = [j for j in self._finals if id(j) not in taken]
        return jobs
