"""streamer_bench.profile's readings: each thread's CPU from /proc, batch sizes from /metrics."""

from __future__ import annotations

import os
import threading

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streamer_bench.profile import batch_sizes, cpu_by_thread, thread_cpu


def test_a_busy_thread_is_told_from_an_idle_one() -> None:
    done, idle_may_end = threading.Event(), threading.Event()
    tids: dict[str, int] = {}

    def spin() -> None:
        tids["busy"] = threading.get_native_id()
        x = 0
        while not done.is_set():
            x += 1

    def rest() -> None:
        tids["idle"] = threading.get_native_id()
        idle_may_end.wait(10)

    threads = [threading.Thread(target=spin, name="busy"), threading.Thread(target=rest, name="idle")]
    for t in threads:
        t.start()
    try:
        before = thread_cpu(os.getpid())
        # until the spinning thread has had 0.1 s of CPU (bounded: a stuck machine fails, not hangs)
        for _ in range(200):
            if thread_cpu(os.getpid())[tids["busy"]][1] - before[tids["busy"]][1] >= 0.1:
                break
            done.wait(0.05)
        after = thread_cpu(os.getpid())
    finally:
        done.set()
        idle_may_end.set()
        for t in threads:
            t.join(10)
    rows = {r["tid"]: r for r in cpu_by_thread(before, after, {tids["busy"]: "busy"}, wall=1.0)}
    assert rows[tids["busy"]]["name"] == "busy" and rows[tids["busy"]]["cpu_s"] >= 0.1
    assert tids["idle"] not in rows  # under 10 ms of CPU: left out


def test_batch_sizes_are_read_per_batcher() -> None:
    registry = CollectorRegistry()
    sizes = Histogram("streamer_batch_size", "", ["batcher"], buckets=(1, 2, 4, 8), registry=registry)
    for n in (1, 3, 3, 8):
        sizes.labels("asr").observe(n)
    sizes.labels("mt").observe(2)
    got = batch_sizes(generate_latest(registry).decode())
    assert got["asr"]["count"] == 4 and got["asr"]["sum"] == 15
    assert got["asr"]["le 2.0"] == 1 and got["asr"]["le 4.0"] == 3 and got["asr"]["le +Inf"] == 4
    assert got["mt"]["count"] == 1
