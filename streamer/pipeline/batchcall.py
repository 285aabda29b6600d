"""One model call of a micro-batcher, run on a model thread, and what it is accounted as.

The call goes through the breaker; a request error (``ValueError``/``KeyError``: the tokenizer refusing a
language, say) fails only the request that caused it (a batch is re-run one job at a time to find it;
the others are served) and never counts toward the breaker; any other failure fails the batch and counts.
A call that succeeds charges its tenants, updates the model's cost per second of input (admission reads
it) and the call log, and resolves its jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from streamer import tracing
from streamer.errors import ModelUnavailableError
from streamer.pipeline.batchload import CallLog
from streamer.pipeline.batchqueue import Batch, Job, Priority, TenantUsage
from streamer.pipeline.batchtypes import (
    REQUEST_ERRORS,
    BatchStats,
    CostMeter,
    GuardedBreaker,
    RequestRefusedError,
)

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


@dataclass
class CallRunner(Generic[P, R]):
    """Runs ``run_batch(key, payloads)`` for a batch and hands each job its result or error.

    ``bucket``: whether batch keys carry a length bucket after the caller's key (the model gets the
    caller's). ``input_s`` (optional): the seconds of model input a payload is decoded in, for ``cost``.
    ``resolve``/``fail`` deliver to the job's ticket; ``report`` gets every call's :class:`BatchStats`.
    """

    name: str
    run_batch: Callable[[Hashable, list[P]], list[R]]
    guard: GuardedBreaker
    usage: TenantUsage
    cost: CostMeter
    calls: CallLog
    clock: Callable[[], float]
    resolve: Callable[[Job[P], object], None]
    fail: Callable[[Job[P], BaseException], None]
    report: Callable[[BatchStats], None] | None = None
    input_s: Callable[[P], float] | None = None
    bucket: bool = False

    def execute(self, batch: Batch[P]) -> None:
        started = self.clock()
        try:
            self.guard.check()
            key = batch.key[0] if self.bucket and isinstance(batch.key, tuple) else batch.key
            results = self.run_batch(key, [j.payload for j in batch.jobs])
            if len(results) != len(batch.jobs):
                raise RuntimeError(f"{self.name} returned {len(results)} results for {len(batch.jobs)} jobs")
        except ModelUnavailableError as e:
            for job in batch.jobs:
                self.fail(job, e)
            return
        except REQUEST_ERRORS as e:
            if len(batch.jobs) > 1:
                for job in batch.jobs:  # find the bad request: the rest are served
                    self.execute(Batch(batch.key, [job], []))
                return
            log.warning("%s refused a request (%s: %s)", self.name, type(e).__name__, e)
            refused = RequestRefusedError(f"the {self.name} model refused this session's request")
            self.fail(batch.jobs[0], refused)
            return
        except Exception as e:
            log.exception("%s batch of %d failed", self.name, len(batch.jobs))
            self.guard.record(success=False)
            err = ModelUnavailableError(f"the {self.name} model failed: {type(e).__name__}")
            for job in batch.jobs:
                self.fail(job, err)
            return
        elapsed = self.clock() - started
        self._account(batch, started, elapsed)
        for job, result in zip(batch.jobs, results, strict=True):
            self.resolve(job, result)
        tracing.model_batch(self.name, batch.jobs, started, elapsed)  # a span, when tracing is on

    def _account(self, batch: Batch[P], started: float, elapsed: float) -> None:
        self.guard.record(success=True)
        for job in batch.jobs:  # the call's time split evenly, as the engines split it
            self.usage.charge(job.tenant, elapsed / len(batch.jobs))
        if self.input_s is not None:
            self.cost.record(len(batch.jobs), sum(self.input_s(j.payload) for j in batch.jobs), elapsed)
        finals = [j for j in batch.jobs if j.priority is Priority.FINAL]
        self.calls.record(elapsed, [started - j.submitted for j in finals])
        if self.report is not None:
            waited = max(started - j.submitted for j in batch.jobs)
            self.report(BatchStats(self.name, len(batch.jobs), len(finals), elapsed, waited))
