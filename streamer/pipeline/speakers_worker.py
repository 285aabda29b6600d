"""The shared speaker-embedding worker: every session's jobs, batched into one encoder call on one thread.

Like the ASR batcher (:mod:`streamer.pipeline.batcher`) but simpler, because every job is alike: a stack
of 1.6 s feature windows (an utterance's partials, or the two sides of each change-point candidate).
The thread waits ``max_wait_s`` after the first job for others to join, then runs the jobs it has (up to
``max_windows`` windows; a larger job runs alone) as one encoder call, and hands each job its rows.
The windows' features are computed on the thread too, so the event loop only queues and awaits.

Bounded: at most ``max_pending`` jobs wait or run; past that a new job is refused at once with
``OverloadedError`` (policy *refuse-newest*: diarization is an extra, and a session that cannot have a
label now gets its final without one rather than waiting behind a backlog). A failed encoder call fails
its jobs with ``ModelUnavailableError``; stopping the worker fails whatever is still queued the same way,
so no caller waits forever.
"""

from __future__ import annotations

import asyncio
import ctypes
import glob
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from streamer.errors import ModelUnavailableError, OverloadedError
from streamer.pipeline.speakers import GE2E, VoiceKind
from streamer.pipeline.speakers_campplus import CAMPLUS, load_campplus
from streamer.pipeline.speakers_encoder import Encoder, partial_starts
from streamer.pipeline.speakers_weights import load_encoder_weights

log = logging.getLogger(__name__)

OVERFLOW_POLICY = "refuse-newest"

EmbedWindows = Callable[[np.ndarray], np.ndarray]  # (n, *kind.window) windows → (n, kind.dim) embeddings


def load_voice_encoder(name: str, path: Path | None = None) -> tuple[EmbedWindows, VoiceKind]:
    """The voice encoder called ``name`` (``ge2e``, ``campplus``): its embedding call and its kind, its
    weights from ``path`` or the cache. Raises ``WeightsError`` when they cannot be read."""
    if name == CAMPLUS.name:
        return load_campplus(path).embed_windows, CAMPLUS
    if name == GE2E.name:
        return Encoder(load_encoder_weights(path)).embed_windows, GE2E
    raise ValueError(f"no voice encoder called {name!r}")


@dataclass
class _Job:
    session_id: str
    prepare: Callable[[], np.ndarray]  # runs on the worker thread: the job's (n, *kind.window) windows
    n_windows: int
    future: asyncio.Future[np.ndarray]
    submitted: float


@dataclass(frozen=True)
class SpeakerBatch:
    """One encoder call, as reported to ``on_batch`` (metrics, tests)."""

    jobs: int
    sessions: int
    windows: int
    seconds: float


class SpeakerWorker:
    """``async with SpeakerWorker(encoder.embed_windows) as worker``: starts and stops its thread."""

    def __init__(
        self,
        embed_windows: EmbedWindows,
        *,
        max_windows: int = 64,
        max_wait_s: float = 0.005,
        max_pending: int = 256,
        on_batch: Callable[[SpeakerBatch], None] | None = None,
        kind: VoiceKind = GE2E,
    ) -> None:
        if max_windows < 1 or max_pending < 1 or max_wait_s < 0:
            raise ValueError("max_windows and max_pending must be at least 1, max_wait_s at least 0")
        self._embed = embed_windows
        self.kind = kind
        self.max_windows = max_windows
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._pending = 0  # queued or running, counted on the loop
        self._stop = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.busy_s = 0.0

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._worker, name="speakers", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Fail what is queued, let a running call finish, join the thread."""
        with self._cond:
            self._stop = True
            queued = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        err = ModelUnavailableError("the speaker worker has stopped")
        for job in queued:
            _set_exception(job.future, err)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._pending

    # ---- submission (event loop)

    async def embed_windows(self, session_id: str, windows: np.ndarray) -> np.ndarray:
        """(n, *kind.window) windows → (n, kind.dim) unit-norm embeddings, batched with other sessions'."""
        if windows.ndim != 3 or windows.shape[0] < 1 or windows.shape[1:] != self.kind.window:
            raise ValueError(f"expected (n, {self.kind.window}) windows, got {windows.shape}")
        return await self._submit(session_id, lambda: windows, windows.shape[0])

    async def embed_utterance(self, session_id: str, audio: np.ndarray) -> np.ndarray:
        """One stretch of 16 kHz float audio → its partials' (n, kind.dim) embeddings (windows made on the
        thread).

        The stretch's embedding is their normalised mean (``speakers_encoder.unit_mean``).
        """
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError("expected a non-empty mono float array")
        return await self.embed_prepared(
            session_id, lambda: self.kind.windows(audio), len(partial_starts(audio.size))
        )

    async def embed_prepared(
        self, session_id: str, prepare: Callable[[], np.ndarray], n_windows: int
    ) -> np.ndarray:
        """The embeddings of the ``n_windows`` (n, *kind.window) windows that ``prepare`` makes on the
        worker thread: one job, however many stretches its windows come from, so that they share one
        encoder call and the event loop makes no features."""
        if n_windows < 1:
            raise ValueError("a job needs at least one window")
        return await self._submit(session_id, prepare, n_windows)

    async def _submit(self, session_id: str, prepare: Callable[[], np.ndarray], n: int) -> np.ndarray:
        if self._thread is None or self._stop:
            raise ModelUnavailableError("the speaker worker is not running")
        if self._pending >= self.max_pending:
            raise OverloadedError(
                f"speaker embedding queue full ({self.max_pending} jobs, {OVERFLOW_POLICY})"
            )
        job = _Job(session_id, prepare, n, asyncio.get_running_loop().create_future(), time.monotonic())
        self._pending += 1
        try:
            with self._cond:
                self._queue.append(job)
                self._cond.notify()
            try:
                return await job.future
            except asyncio.CancelledError:
                with self._cond:  # the caller gave up: do not spend the model on it
                    if job in self._queue:
                        self._queue.remove(job)
                raise
        finally:
            self._pending -= 1

    # ---- worker thread

    def _take(self) -> list[_Job] | None:
        """Wait for jobs, give late ones ``max_wait_s`` to join, take up to ``max_windows``; None on stop."""
        with self._cond:
            while True:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return None
                deadline = self._queue[0].submitted + self.max_wait_s
                while self._queue and sum(j.n_windows for j in self._queue) < self.max_windows:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stop:
                        break
                    self._cond.wait(left)
                if self._stop:
                    return None
                if self._queue:  # every job it waited for may have been cancelled meanwhile
                    break
            jobs = [self._queue.popleft()]
            windows = jobs[0].n_windows
            while self._queue and windows + self._queue[0].n_windows <= self.max_windows:
                windows += self._queue[0].n_windows
                jobs.append(self._queue.popleft())
            return jobs

    def _worker(self) -> None:
        one_blas_thread()
        while (jobs := self._take()) is not None:
            started = time.monotonic()
            try:
                stacks = [job.prepare() for job in jobs]
                out = self._embed(np.concatenate(stacks))
                if out.shape[0] != sum(s.shape[0] for s in stacks):
                    raise RuntimeError(f"the encoder returned {out.shape[0]} rows for {len(stacks)} jobs")
            except Exception as e:
                log.exception("speaker embedding batch of %d jobs failed", len(jobs))
                err = ModelUnavailableError(f"the speaker encoder failed: {type(e).__name__}")
                for job in jobs:
                    self._call_soon(_set_exception, job.future, err)
                continue
            elapsed = time.monotonic() - started
            self.busy_s += elapsed
            row = 0
            for job, stack in zip(jobs, stacks, strict=True):
                self._call_soon(_set_result, job.future, out[row : row + stack.shape[0]])
                row += stack.shape[0]
            if self._on_batch is not None:
                stats = SpeakerBatch(len(jobs), len({j.session_id for j in jobs}), row, elapsed)
                self._call_soon(self._on_batch, stats)

    def _call_soon(self, fn: Callable[..., object], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)


def one_blas_thread() -> bool:
    """Limit the calling thread's OpenBLAS to one thread (numpy's bundled OpenBLAS, per thread).

    The encoder's products are small (a batch of 256-wide rows); with two BLAS threads each step spin-waits
    for the other, which cost 3-10x the CPU on the bench (BENCHMARKS.md, "Speakers"). Only this thread
    is limited: ``openblas_set_num_threads_local`` leaves the rest of the process as it was. False (and a
    log line) when numpy's OpenBLAS lacks it.
    """
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*.so*"))):
        try:
            setter = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        setter(1)
        return True
    log.warning("numpy's OpenBLAS has no per-thread limit: the speaker encoder uses its default threads")
    return False


def _set_result(fut: asyncio.Future[np.ndarray], result: np.ndarray) -> None:
    if not fut.done():
        fut.set_result(result)


def _set_exception(fut: asyncio.Future[np.ndarray], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
