"""The shared micro-batcher: all sessions submit jobs; dedicated threads (``workers``) run the model on
batches.

Event-loop side: ``submit_final`` (awaits a bounded slot, then the result) and ``submit_partial``
(latest-wins, may resolve to None when coalesced or stale). Thread side: forms batches with
:class:`BatchQueue` and calls ``run_batch(key, payloads)``. A circuit breaker guards the model: while it
is open every job fails fast with ``ModelUnavailableError``; a watchdog on the loop fails a batch that
runs past ``call_timeout_s`` (a hung model) and counts it as a failure.

A call itself, and what a request error is (not a model failure: the edge validates configs before
anything reaches the model, so this is the second line; one client must not open the breaker for all),
is :mod:`streamer.pipeline.batchcall`; what the calls add up to (busy time, latency) is
:mod:`streamer.pipeline.batchload`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Generic, Self, TypeVar

from streamer import tracing
from streamer.errors import ModelUnavailableError
from streamer.pipeline.batchcall import CallRunner
from streamer.pipeline.batchload import CallLog
from streamer.pipeline.batchqueue import Batch, BatchQueue, Job, Priority, TenantUsage
from streamer.pipeline.batchtypes import BatcherSnapshot, BatchStats, Breaker, CostMeter, GuardedBreaker
from streamer.pipeline.calibration import CpuShare
from streamer.pipeline.prepare import Preparer

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


class MicroBatcher(Generic[P, R]):
    """Runs the model on ``workers`` dedicated threads (each takes the next batch due, so a job that
    arrives during a call no longer waits for that whole call); an async context manager starts and stops
    those threads, the feature thread and the watchdog together (``async with MicroBatcher(...) as b``).

    ``prepare`` (optional) turns a payload into what the model thread needs, once, when it is submitted,
    on a thread of its own (the ASR engine's log-Mel features), so the model threads never wait for it.
    ``input_s`` (optional) says how many seconds of model input a payload is decoded in (its padded
    window): every batch then updates ``cost`` (model seconds per second of input at the batch sizes
    formed), which admission reads.
    ``bucket`` (optional) is the input length a payload is padded to: only jobs of one bucket share a
    call, so a short utterance is never padded to a long one's window.
    ``cpu`` (optional): the CPU the model threads get beside other work on the machine; the snapshot then
    says what the workers running at once are worth (``cores``), in calls that run alone.
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[Hashable, list[P]], list[R]],
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.01,
        max_pending_finals: int = 256,
        call_timeout_s: float = 30.0,
        breaker: Breaker | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_drop: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        workers: int = 1,
        prepare: Callable[[P], P] | None = None,
        input_s: Callable[[P], float] | None = None,
        bucket: Callable[[P], Hashable] | None = None,
        cpu: CpuShare | None = None,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self.workers = max(1, workers)
        self._prepare = prepare
        self._preparer: Preparer[P] | None = None
        self._bucket = bucket
        self.cost = CostMeter()
        # model time per tenant (API key): the queue serves the least-served tenant first (batchqueue.py)
        self.usage = TenantUsage(clock=clock)
        self._queue: BatchQueue[P] = BatchQueue(max_batch, max_wait_s, usage=self.usage.usage)
        self._cond = threading.Condition()
        self._final_slots = asyncio.Semaphore(max_pending_finals)
        self._finals_held = 0
        self.max_pending_finals = max_pending_finals
        self.call_timeout_s = call_timeout_s
        self.breaker = breaker
        self._guard = GuardedBreaker(name, breaker)
        self._on_drop = on_drop
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._running: dict[int, tuple[list[Job[P]], float]] = {}  # worker -> (its batch, started at)
        self._stop = False
        self._watchdog: asyncio.Task[None] | None = None
        self.hung = False  # a model call has run past call_timeout_s and not returned yet
        self.calls = CallLog(clock, self.workers)
        self._runner: CallRunner[P, R] = CallRunner(
            name,
            run_batch,
            self._guard,
            self.usage,
            self.cost,
            self.calls,
            clock,
            self._resolve,
            self._fail,
            report=(lambda stats: self._call_soon(on_batch, stats)) if on_batch is not None else None,
            input_s=input_s,
            bucket=bucket is not None,
        )
        self.cpu = cpu

    # ---- lifecycle

    async def __aenter__(self) -> Self:
        self.start()
        self._watchdog = asyncio.create_task(self.watchdog(), name=f"watchdog-{self.name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def start(self) -> None:
        """Start the model threads (the context manager also starts the watchdog)."""
        self._loop = asyncio.get_running_loop()
        if self._prepare is not None:
            self._preparer = Preparer(self.name, self._prepare)
        for i in range(self.workers):
            suffix = f"-{i}" if i else ""
            thread = threading.Thread(target=self._worker, args=(i,), name=f"batcher-{self.name}{suffix}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    async def stop(self) -> None:
        """Stop the watchdog (if started here) and the model thread."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            try:
                await watchdog
            except asyncio.CancelledError:
                if not watchdog.cancelled():  # the cancellation was aimed at us, not the watchdog
                    raise
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 5.0)
        if self._preparer is not None:
            await asyncio.to_thread(self._preparer.close)

    # ---- submission (event loop)

    @property
    def finals_pending(self) -> int:
        """Final jobs holding a slot (queued or running)."""
        return self._finals_held

    def snapshot(self) -> BatcherSnapshot:
        """The numbers admission control reads."""
        return BatcherSnapshot(
            hung=self.hung,
            finals_pending=self._finals_held,
            max_pending_finals=self.max_pending_finals,
            latency_ewma_s=self.calls.latency_ewma_s,
            last_batch_at=self.calls.last_batch_at,
            workers=self.workers,
            cost_per_input_s=self.cost.cost(),
            cores=self._cores(),
        )

    def _cores(self) -> float | None:
        """What the workers running at once are worth, in calls running alone (None: one each); the
        watchdog samples the CPU all along, so reading it here costs no I/O on the admission path."""
        if self.cpu is None:
            return None
        return self.cpu.parallel(self.workers)

    @property
    def depth(self) -> tuple[int, int]:
        """(finals waiting, partials waiting) — not counting the batch being run."""
        with self._cond:
            return self._queue.finals_waiting, self._queue.partials_waiting

    def utilization(self, window_s: float = 3.0) -> float:
        """The fraction of the last ``window_s`` the model threads spent running batches (0..1)."""
        return self.calls.utilization(window_s)

    def _check_hung(self) -> None:
        if self.hung:
            raise ModelUnavailableError(f"the {self.name} model is not responding", retry_after=5.0)

    async def submit_final(self, session_id: str, key: Hashable, payload: P, tenant: str = "") -> R:
        """Queue a job that must not be dropped; waits for a slot when the queue is full. ``tenant``: whose
        model time it is (fair shares between tenants; "" for all untagged work)."""
        self._check_hung()
        async with self._final_slots:
            self._finals_held += 1
            try:
                if self._preparer is not None:
                    payload = await self._preparer.prepared(payload)
                fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
                job: Job[P] = Job(
                    session_id,
                    self._queue_key(key, payload),
                    payload,
                    Priority.FINAL,
                    self._clock(),
                    tenant=tenant,
                    ticket=fut,
                    trace=tracing.current_parent(),
                )
                with self._cond:
                    self._queue.push(job)
                    self._cond.notify()
                try:
                    return await fut
                except asyncio.CancelledError:
                    # the caller gave up (a speculative final whose speech resumed): do not run it
                    with self._cond:
                        self._queue.withdraw(job)
                    raise
            finally:
                self._finals_held -= 1

    def submit_partial(
        self, session_id: str, key: Hashable, payload: P, stale_after: float, tenant: str = ""
    ) -> asyncio.Future[R | None]:
        """Queue a droppable job; resolves to None if it is replaced, stale or discarded."""
        fut: asyncio.Future[R | None] = asyncio.get_running_loop().create_future()
        if self.hung:
            fut.set_result(None)
            return fut
        if self._preparer is None:
            self._push_partial(session_id, key, payload, stale_after, tenant, fut)
        else:  # queued once prepared, unless a newer partial or a discard overtakes it meanwhile
            self._preparer.partial(
                session_id,
                payload,
                lambda ready: self._push_partial(session_id, key, ready, stale_after, tenant, fut),
            )
        return fut

    def _push_partial(
        self,
        session_id: str,
        key: Hashable,
        payload: P | None,
        stale_after: float,
        tenant: str,
        fut: asyncio.Future[R | None],
    ) -> None:
        if payload is None:  # overtaken while it was prepared
            _set_result(fut, None)
            if self._on_drop:
                self._on_drop("coalesced")
            return
        job: Job[P] = Job(
            session_id,
            self._queue_key(key, payload),
            payload,
            Priority.PARTIAL,
            self._clock(),
            stale_after=stale_after,
            tenant=tenant,
            ticket=fut,
            trace=tracing.current_parent(),
        )
        with self._cond:
            replaced = self._queue.push(job)
            self._cond.notify()
        if replaced is not None:
            self._resolve(replaced, None)
            if self._on_drop:
                self._on_drop("coalesced")

    def _queue_key(self, key: Hashable, payload: P) -> Hashable:
        """What jobs must share to share a call: the caller's key, and the length bucket when known."""
        return (key, self._bucket(payload)) if self._bucket is not None else key

    def discard_partial(self, session_id: str) -> None:
        if self._preparer is not None:
            self._preparer.forget(session_id)
        with self._cond:
            job = self._queue.discard_partial(session_id)
        if job is not None:
            self._resolve(job, None)

    # ---- worker thread

    def _worker(self, index: int) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
                self._running[index] = (batch.jobs, self._clock())
            self._notify_dropped(batch)
            if batch.jobs:
                self._runner.execute(batch)
            with self._cond:
                del self._running[index]
                # the hung flag holds while any call is still past the timeout (another worker's)
                now = self._clock()
                self.hung = any(now - since > self.call_timeout_s for _, since in self._running.values())

    def _next_batch(self) -> Batch[P] | None:
        """Wait (holding the condition) until a batch is due; None on stop."""
        while not self._stop:
            wait = self._queue.wait_time(self._clock())
            if wait == 0.0:
                return self._queue.take(self._clock(), force=True)
            self._cond.wait(timeout=wait)
        return None

    def _notify_dropped(self, batch: Batch[P]) -> None:
        for job in batch.dropped:
            self._resolve(job, None)
            if self._on_drop:
                self._call_soon(self._on_drop, "stale")

    # ---- delivery to the loop

    def _call_soon(self, fn: Callable[..., object], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _resolve(self, job: Job[P], result: object) -> None:
        self._call_soon(_set_result, job.ticket, result)

    def _fail(self, job: Job[P], exc: BaseException) -> None:
        self._call_soon(_set_exception, job.ticket, exc)

    # ---- watchdog (event loop)

    async def watchdog(self, period_s: float = 0.25) -> None:
        """Fail a batch that has run past the call timeout; fail queued jobs fast while open."""
        flagged: set[float] = set()
        while True:
            await asyncio.sleep(period_s)
            if self.cpu is not None:  # the machine's other work, averaged from samples taken all along
                self.cpu.sample()
            with self._cond:
                calls = list(self._running.values())
            late = [(jobs, since) for jobs, since in calls if self._clock() - since > self.call_timeout_s]
            running = [job for jobs, since in late if since not in flagged for job in jobs]
            flagged = {since for _, since in late}
            if not running:
                continue
            log.error("%s model call exceeded %.1fs; failing its work", self.name, self.call_timeout_s)
            self._guard.record(success=False)
            err = ModelUnavailableError(f"the {self.name} model timed out", retry_after=5.0)
            # nothing queued can run while the model thread is stuck: fail it all now, and fail new
            # work at submission until the stuck call returns
            with self._cond:
                self.hung = True
                queued = self._queue.drain()
            for job in running + queued:
                _set_exception(job.ticket, err)


def _set_result(fut: object, result: object) -> None:
    assert isinstance(fut, asyncio.Future)
    if not fut.done():
        fut.set_result(result)


def _set_exception(fut: object, exc: BaseException) -> None:
    assert isinstance(fut, asyncio.Future)
    if not fut.done():
        fut.set_exception(exc)
