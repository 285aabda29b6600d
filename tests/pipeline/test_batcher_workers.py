"""Two model calls in flight, and jobs prepared off the model threads (real threads, slow fake models)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable

import pytest

from streamer.pipeline.batcher import MicroBatcher

KEY = ("transcribe", "en")


class Overlapping:
    """A fake ``run_batch`` that returns only once ``parties`` calls are inside it at the same time: with
    fewer calls in flight it waits out ``timeout`` and fails its batch."""

    def __init__(self, parties: int, timeout: float = 5.0) -> None:
        self.barrier = threading.Barrier(parties, timeout=timeout)
        self.threads: set[str] = set()
        self.inside = 0
        self.most_inside = 0
        self._lock = threading.Lock()

    def __call__(self, key: Hashable, payloads: list[str]) -> list[str]:
        with self._lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.threads.add(threading.current_thread().name)
        try:
            self.barrier.wait()
        finally:
            with self._lock:
                self.inside -= 1
        return [f"r:{p}" for p in payloads]


async def test_two_workers_run_two_batches_at_once() -> None:
    model = Overlapping(parties=2)
    async with MicroBatcher("asr", model, max_batch=1, max_wait_s=0.0, workers=2) as batcher:
        results = await asyncio.wait_for(
            asyncio.gather(batcher.submit_final("a", KEY, "1"), batcher.submit_final("b", KEY, "2")), 10
        )
    assert sorted(results) == ["r:1", "r:2"]
    assert model.most_inside == 2
    assert model.threads == {"batcher-asr", "batcher-asr-1"}


async def test_one_worker_runs_one_batch_at_a_time() -> None:
    model = Overlapping(parties=2, timeout=0.3)  # the second call never comes while the first runs
    async with MicroBatcher("asr", model, max_batch=1, max_wait_s=0.0, workers=1) as batcher:
        outcomes = await asyncio.gather(
            batcher.submit_final("a", KEY, "1"), batcher.submit_final("b", KEY, "2"), return_exceptions=True
        )
    assert model.most_inside == 1
    assert all(isinstance(o, Exception) for o in outcomes)


async def test_jobs_are_prepared_on_the_feature_thread_before_the_model_sees_them() -> None:
    seen: list[tuple[str, str]] = []  # (payload, thread that ran the model)
    prepared_on: list[str] = []

    def prepare(payload: str) -> str:
        prepared_on.append(threading.current_thread().name)
        return f"{payload}+mel"

    def run(key: Hashable, payloads: list[str]) -> list[str]:
        seen.extend((p, threading.current_thread().name) for p in payloads)
        return payloads

    async with MicroBatcher("asr", run, max_wait_s=0.0, prepare=prepare) as batcher:
        final = await batcher.submit_final("a", KEY, "f")
        partial = await batcher.submit_partial("b", KEY, "p", stale_after=5.0)
    assert (final, partial) == ("f+mel", "p+mel")
    assert all(name.startswith("features-asr") for name in prepared_on) and len(prepared_on) == 2
    assert all(thread.startswith("batcher-asr") for _, thread in seen)


async def test_a_partial_overtaken_while_it_is_prepared_is_coalesced() -> None:
    release = threading.Event()
    runs: list[list[str]] = []

    def prepare(payload: str) -> str:
        if payload == "old":
            assert release.wait(5)
        return payload

    def run(key: Hashable, payloads: list[str]) -> list[str]:
        runs.append(payloads)
        return payloads

    drops: list[str] = []
    async with MicroBatcher("asr", run, max_wait_s=0.0, prepare=prepare, on_drop=drops.append) as batcher:
        old = batcher.submit_partial("s", KEY, "old", stale_after=5.0)
        new = batcher.submit_partial("s", KEY, "new", stale_after=5.0)  # waits behind "old" on the thread
        release.set()
        assert await asyncio.wait_for(old, 5) is None
        assert await asyncio.wait_for(new, 5) == "new"
        gone = batcher.submit_partial("t", KEY, "gone", stale_after=5.0)
        batcher.discard_partial("t")  # the utterance ended while its partial was being prepared
        assert await asyncio.wait_for(gone, 5) is None
    assert runs == [["new"]]
    assert drops.count("coalesced") == 2


@pytest.mark.parametrize("workers", [1, 2])
async def test_utilization_is_a_share_of_all_workers(workers: int) -> None:
    async with MicroBatcher("asr", lambda k, p: p, max_wait_s=0.0, workers=workers) as batcher:
        await batcher.submit_final("a", KEY, "x")
        assert 0.0 <= batcher.utilization() <= 1.0 / workers
