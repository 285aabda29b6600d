"""One key's crafted audio must not take the model from the other keys (issue 23, item 4).

Reversed-speech fragments failed nearly every first decode and ran the whole fallback ladder (beam 5,
then five temperatures) on each utterance: ten times the model time of real speech, and three such
sessions of one key made admission refuse everyone. Now the ladder is paid from a budget per session and
per key, and the batcher serves the least-served key first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable

from faults.streams import eventually

from streamer.guards.load import FallbackBudget
from streamer.pipeline.asr import FALLBACK_LADDER
from streamer.pipeline.batcher import MicroBatcher
from streamer.pipeline.batchqueue import BatchQueue, Job, Priority


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_fallback_budget_is_per_session_and_per_key_and_refills() -> None:
    clock = Clock()
    budget = FallbackBudget(clock, window_s=60.0)
    ratio = 0.5
    budget.record_speech("k", "s1", 2.0)  # 1 s of grace + 0.5 x 2 s of speech
    assert budget.allows("k", "s1", ratio)
    budget.charge("k", "s1", 1.5)
    assert budget.allows("k", "s1", ratio)
    budget.charge("k", "s1", 0.6)
    assert not budget.allows("k", "s1", ratio)  # the session spent 2.1 of its 2.0
    # another session of the key has its own budget, and the key's: 1 + 0.5 x 3 s - 2.1 = 0.4 left
    budget.record_speech("k", "s2", 1.0)
    assert budget.allows("k", "s2", ratio)
    budget.charge("k", "s2", 0.5)
    assert not budget.allows("k", "s2", ratio)  # its own 1.5 is not spent, the key's is
    assert budget.allows("other", "s3", ratio)  # another key is not charged for it
    clock.now += 61.0  # spending older than the window is forgotten
    assert budget.allows("k", "s1", ratio) and budget.allows("k", "s2", ratio)


def _final(name: str, tenant: str, key: Hashable, at: float) -> Job[str]:
    return Job(name, key, name, Priority.FINAL, at, tenant=tenant)


def test_the_least_served_key_leads_the_next_batch_whatever_is_queued_before_it() -> None:
    usage = {"hostile": 40.0, "honest": 0.5}
    queue: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.0, usage=lambda t: usage.get(t, 0.0))
    for i, decode in enumerate(FALLBACK_LADDER):  # six sessions' fallback decodes, one group each
        queue.push(_final(f"h{i}", "hostile", ("transcribe", "en", decode.label), at=i))
    for i in range(6):  # and their first decodes
        queue.push(_final(f"g{i}", "hostile", ("transcribe", "en", "default"), at=10 + i))
    queue.push(_final("mine", "honest", ("transcribe", "en", "default"), at=20))
    batch = queue.take(now=21)
    assert batch is not None
    # FIFO would run six fallback batches first; the honest final leads, the group filled round robin
    assert [j.payload for j in batch.jobs] == ["mine", "g0", "g1", "g2"]


async def test_an_honest_final_waits_for_at_most_the_call_in_progress() -> None:
    gate, order = threading.Event(), []

    def model(key: Hashable, payloads: list[str]) -> list[str]:
        order.append(tuple(payloads))
        if payloads == ["first"]:
            gate.wait(10)
        return payloads

    async with MicroBatcher("asr", model, max_batch=2, max_wait_s=0.0) as batcher:
        batcher.usage.charge("hostile", 30.0)  # what its fallback ladders cost lately
        first = asyncio.create_task(batcher.submit_final("h", "default", "first", tenant="hostile"))
        await eventually(lambda: bool(order), "the model thread to take the hostile call")
        hostile = [
            asyncio.create_task(batcher.submit_final(f"h{i}", d.label, f"h{i}", tenant="hostile"))
            for i, d in enumerate(FALLBACK_LADDER)
        ]
        await asyncio.sleep(0)  # the hostile jobs are queued first
        mine = asyncio.create_task(batcher.submit_final("me", "default", "mine", tenant="honest"))
        await eventually(lambda: batcher.depth[0] == len(hostile) + 1, "every final to be queued")
        gate.set()
        assert await asyncio.wait_for(mine, 5.0) == "mine"
        await asyncio.wait_for(asyncio.gather(first, *hostile), 5.0)
    assert order[1] == ("mine",), order  # the next call after the one running, not the eighth
