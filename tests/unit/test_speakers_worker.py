"""SpeakerWorker: a real thread; the encoder is a gated recording fake, so batches form deterministically.

Jobs pile up behind a held first call (``Gate``); tests wait on events and futures, never on sleeps.
One test runs the real encoder through the worker.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from streamer.errors import ModelUnavailableError, OverloadedError
from streamer.pipeline.speakers_encoder import Encoder, utterance_partials
from streamer.pipeline.speakers_weights import load_encoder_weights
from streamer.pipeline.speakers_worker import SpeakerBatch, SpeakerWorker


class Gate:
    """A fake ``embed_windows``: row k of the answer is the window's first value, so rows can be traced."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.fail = False

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        self.calls.append(mels.shape[0])
        self.entered.set()
        if not self.open.wait(10):
            raise RuntimeError("the test never opened the gate")
        if self.fail:
            raise RuntimeError("encoder exploded")
        out = np.zeros((mels.shape[0], 256), np.float32)
        out[:, 0] = mels[:, 0, 0]
        return out


def windows(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 160, 40), value, np.float32)


async def queued(worker: SpeakerWorker, n: int) -> None:
    """Let the submitting tasks run up to their await: each queues its job without suspending before."""
    for _ in range(10):
        if worker.pending >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{worker.pending} jobs pending, expected {n}")


async def hold(worker: SpeakerWorker, gate: Gate) -> asyncio.Task[np.ndarray]:
    """Start a call and keep it running until ``gate.open.set()``."""
    gate.open.clear()
    gate.entered.clear()
    task = asyncio.create_task(worker.embed_windows("holder", windows(-1.0)))
    assert await asyncio.to_thread(gate.entered.wait, 5), "the holding call never started"
    return task


async def test_jobs_from_many_sessions_share_one_encoder_call() -> None:
    gate = Gate()
    batches: list[SpeakerBatch] = []
    async with SpeakerWorker(gate, max_wait_s=0.0, on_batch=batches.append) as worker:
        held = await hold(worker, gate)
        jobs = [asyncio.create_task(worker.embed_windows(f"s{k}", windows(float(k), n=k))) for k in (1, 2, 3)]
        await queued(worker, 4)
        gate.open.set()
        results = await asyncio.wait_for(asyncio.gather(held, *jobs), 5)
    assert gate.calls == [1, 6]  # the three jobs behind the held call went as one
    for k, rows in zip((1, 2, 3), results[1:], strict=True):
        assert rows.shape == (k, 256) and (rows[:, 0] == k).all()  # each job got its own rows back
    assert batches[-1].jobs == 3 and batches[-1].sessions == 3 and batches[-1].windows == 6


async def test_a_batch_never_exceeds_max_windows() -> None:
    gate = Gate()
    async with SpeakerWorker(gate, max_wait_s=0.0, max_windows=4) as worker:
        held = await hold(worker, gate)
        jobs = [asyncio.create_task(worker.embed_windows(f"s{k}", windows(1.0, n=3))) for k in range(2)]
        await queued(worker, 3)
        gate.open.set()
        await asyncio.wait_for(asyncio.gather(held, *jobs), 5)
    assert gate.calls == [1, 3, 3]


async def test_a_full_queue_refuses_the_newest_job_at_once() -> None:
    gate = Gate()
    async with SpeakerWorker(gate, max_wait_s=0.0, max_pending=2) as worker:
        held = await hold(worker, gate)
        waiting = asyncio.create_task(worker.embed_windows("b", windows(2.0)))
        await queued(worker, 2)
        with pytest.raises(OverloadedError, match="refuse-newest"):
            await worker.embed_windows("c", windows(3.0))
        gate.open.set()
        assert (await asyncio.wait_for(waiting, 5))[0, 0] == 2.0
        await held
    assert worker.pending == 0


async def test_stopping_fails_queued_jobs_and_refuses_new_ones() -> None:
    gate = Gate()
    worker = SpeakerWorker(gate, max_wait_s=0.0)
    await worker.__aenter__()
    held = await hold(worker, gate)
    waiting = asyncio.create_task(worker.embed_windows("b", windows(2.0)))
    await queued(worker, 2)
    stopping = asyncio.create_task(worker.stop())
    with pytest.raises(ModelUnavailableError, match="stopped"):
        await asyncio.wait_for(waiting, 5)
    gate.open.set()  # the running call finishes and is delivered; then the thread ends
    assert (await asyncio.wait_for(held, 5))[0, 0] == -1.0
    await asyncio.wait_for(stopping, 5)
    with pytest.raises(ModelUnavailableError, match="not running"):
        await worker.embed_windows("c", windows(1.0))


async def test_a_failed_call_fails_its_jobs_and_the_worker_goes_on() -> None:
    gate = Gate()
    gate.fail = True
    async with SpeakerWorker(gate, max_wait_s=0.0) as worker:
        with pytest.raises(ModelUnavailableError, match="RuntimeError"):
            await asyncio.wait_for(worker.embed_windows("a", windows(1.0)), 5)
        gate.fail = False
        assert (await asyncio.wait_for(worker.embed_windows("a", windows(1.0)), 5))[0, 0] == 1.0


async def test_a_cancelled_job_is_not_run() -> None:
    gate = Gate()
    async with SpeakerWorker(gate, max_wait_s=0.0) as worker:
        held = await hold(worker, gate)
        gone = asyncio.create_task(worker.embed_windows("b", windows(2.0, n=5)))
        await queued(worker, 2)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        after = asyncio.create_task(worker.embed_windows("c", windows(3.0)))
        gate.open.set()
        await asyncio.wait_for(asyncio.gather(held, after), 5)
    assert 5 not in gate.calls and 6 not in gate.calls


async def test_a_job_cancelled_while_the_worker_waits_for_more_leaves_it_working() -> None:
    """A diarized final's search cancels the tests it no longer needs; when the only queued job goes
    while the worker waits out its window, the worker waits for the next job (it used to take from the
    empty queue and its thread died, so every later job waited forever)."""
    gate = Gate()
    async with SpeakerWorker(gate, max_wait_s=0.5) as worker:
        gone = asyncio.create_task(worker.embed_windows("a", windows(1.0)))
        await queued(worker, 1)
        await asyncio.sleep(0.2)  # the worker has woken for it and waits out its window for more
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        await asyncio.sleep(0.5)  # past that window's end
        rows = await asyncio.wait_for(worker.embed_windows("b", windows(2.0)), 5)
    assert rows[0, 0] == 2.0 and gate.calls == [1]


async def test_bad_windows_are_refused_before_they_queue() -> None:
    async with SpeakerWorker(Gate()) as worker:
        with pytest.raises(ValueError, match="windows"):
            await worker.embed_windows("a", np.zeros((1, 100, 40), np.float32))
        with pytest.raises(ValueError, match="mono"):
            await worker.embed_utterance("a", np.zeros(0, np.float32))
        with pytest.raises(ValueError, match="at least one window"):
            await worker.embed_prepared("a", lambda: windows(1.0), 0)
        assert worker.pending == 0


async def test_a_prepared_job_makes_its_windows_on_the_worker_thread() -> None:
    """A final's change-point windows and its own partials are one job, their mels made on the worker
    thread (not the event loop's), and its rows come back in the order the job made them."""
    gate, made_on = Gate(), []

    def prepare() -> np.ndarray:
        made_on.append(threading.current_thread().name)
        return np.concatenate([windows(1.0, n=2), windows(2.0)])

    async with SpeakerWorker(gate) as worker:
        rows = await asyncio.wait_for(worker.embed_prepared("s", prepare, 3), 5)
    assert made_on == ["speakers"] and gate.calls == [3]
    assert rows[:, 0].tolist() == [1.0, 1.0, 2.0]


async def test_the_real_encoder_through_the_worker_matches_a_direct_call() -> None:
    encoder = Encoder(load_encoder_weights())
    rng = np.random.default_rng(3)
    audio = [(rng.standard_normal(16000 * k) * 0.05).astype(np.float32) for k in (1, 3)]
    async with SpeakerWorker(encoder.embed_windows, max_wait_s=0.05) as worker:
        got = await asyncio.wait_for(asyncio.gather(*(worker.embed_utterance("s", a) for a in audio)), 30)
    for a, rows in zip(audio, got, strict=True):
        np.testing.assert_allclose(rows, encoder.embed_windows(utterance_partials(a)), atol=1e-5)
