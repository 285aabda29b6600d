"""What a second of audio costs the model on this machine, measured rather than assumed.

The same build runs on an AVX-512 Xeon, an AVX2-only EPYC and a GPU; the model's seconds per second of
audio differ between them by a factor, and so does the number of live sessions a server can hold. At
start-up :func:`calibrate` times the model on batches of the sizes it will form, on a short recorded
sentence, with every worker calling at once as they do under load; from then on every batch the batcher
runs updates the figure (:class:`CostMeter`), so admission reads what this CPU does now, contention
included, before any session has streamed long enough to be measured on its own.

The probe is speech because the decoder's share of a call depends on what it hears. The probe used to
be 5 s of low noise: decoded to one token in a 10 s window, it timed the encoder alone, at 0.008 model
seconds per input second where a real sentence in its 5 s window costs 0.02 (AMD EPYC, AVX-512, one
thread; BENCHMARKS.md), and admission's prior made up for it with twice the input a session really
causes. How the encoder and the decoder compare differs from one CPU to the next, so only a probe that
exercises both can carry a plan from one CPU to another.
:class:`CpuShare` says how much of a core each model call gets beside the other work on the machine, so
the plan counts the cores its workers really have, not one each.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import threading
import time
import wave
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from streamer.pipeline.asr import AsrEngine, AsrRequest
from streamer.pipeline.audio import MODEL_RATE, Audio
from streamer.pipeline.batchtypes import CostMeter

# the batch sizes calibration times
PROBE_SIZES = (1, 4)
# a sentence of speech (espeak-ng, 3.5 s: "Please open the window and let some fresh air into the room.")
PROBE_FILE = "calibration_en.wav"


def speech_probe() -> Audio:
    """The calibration sentence, 16 kHz mono float32 (shipped with the package)."""
    with (
        resources.as_file(resources.files("streamer") / "assets" / PROBE_FILE) as path,
        wave.open(str(path)) as w,
    ):
        if w.getframerate() != MODEL_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{PROBE_FILE} must be 16 kHz mono 16-bit PCM")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def calibrate(
    engine: AsrEngine,
    meter: CostMeter,
    run_batch: Callable[[AsrEngine, Sequence[AsrRequest]], object] | None = None,
    sizes: Sequence[int] = PROBE_SIZES,
    clock: Callable[[], float] = time.perf_counter,
    *,
    workers: int = 1,
    input_s: Callable[[AsrRequest], float] | None = None,
) -> dict[int, float]:
    """Time the model on batches of ``sizes`` copies of the speech probe (blocking: call it in a thread),
    ``workers`` calls at once, and seed ``meter``; returns model seconds per input second by size.
    ``input_s`` is the model input a request is decoded in (its padded window; default its audio), as
    the batcher counts it. The first call also warms the model up, so it is run once untimed."""
    audio = speech_probe()
    run = run_batch or (lambda e, requests: e.transcribe_batch(requests))
    seconds_of = input_s or (lambda request: request.audio.size / MODEL_RATE)
    run(engine, [AsrRequest(audio)])
    costs = {}
    for size in sizes:
        requests = [AsrRequest(audio) for _ in range(size)]
        seconds = sum(seconds_of(r) for r in requests)
        took = statistics.mean(at_once(functools.partial(run, engine, requests), workers, clock))
        meter.record(size, seconds, took, typical=False)
        costs[size] = took / seconds
    return costs


def at_once(call: Callable[[], object], calls: int, clock: Callable[[], float]) -> list[float]:
    """Run ``call`` ``calls`` times at once, each on its own thread; how long each took. Under load the
    workers call the model together, and on some machines two calls at once each run slower than one
    alone (shared caches, memory bandwidth, hyper-threads): a plan timed on calls alone would not see it."""
    if calls <= 1:
        started = clock()
        call()
        return [clock() - started]
    start = threading.Barrier(calls)
    took: list[float] = []
    failed: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            start.wait()
            began = clock()
            call()
            with lock:
                took.append(clock() - began)
        except BaseException as e:  # handed to the caller below
            start.abort()
            with lock:
                failed.append(e)

    threads = [threading.Thread(target=one, name=f"calibrate-{i}") for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]
    return took


# the machine's runnable threads and this process's own are averaged over this time constant, so the
# two can be subtracted: short enough that a process that ended a few seconds ago no longer counts (the
# kernel's 1-minute load average still held the last bench's server when the next one started, and a
# fresh server refused 11 of 16 synchronized sessions it then served at p95 0.6 s)
RUNNABLE_TAU_S = 10.0
SAMPLE_EVERY_S = 0.5


def read_running(stat: Path = Path("/proc/stat")) -> float | None:
    """Threads runnable on the machine now (on a CPU or waiting for one), all processes, not counting
    the one reading; None where the kernel does not say (``procs_running`` in ``/proc/stat``)."""
    try:
        with stat.open() as f:
            for line in f:
                if line.startswith("procs_running "):
                    return max(0.0, float(line.split()[1]) - 1.0)
    except (OSError, ValueError):
        return None
    return None


def read_runnable_s(tasks: Path = Path("/proc/self/task")) -> float | None:
    """Seconds this process's threads have been runnable (on a CPU or waiting for one), all together;
    None where the kernel does not say (``schedstat``: ns on a CPU, ns waiting in a run queue)."""
    total = 0
    try:
        for task in tasks.iterdir():
            try:
                run_ns, wait_ns, _ = (task / "schedstat").read_text().split()
            except (OSError, ValueError):
                continue  # a thread that ended while it was read
            total += int(run_ns) + int(wait_ns)
    except OSError:
        return None
    return total / 1e9


class CpuShare:
    """The CPU this process's model calls get beside whatever else runs on the machine.

    Calibration and the cost meter time model calls in wall seconds; a plan that divides their load by
    the workers assumes a second worker doubles what one does. On a machine shared with other work it
    does not: two busy processes beside the server's two workers on two cores give a call alone 2/3 of
    a core and two calls at once half a core each, so two workers do 1.5 times what one does (on the
    2-core EPYC at load 6-7 the two-worker plan admitted 16 synchronized sessions then served at p95
    4.4-5.0 s). The outside demand is the machine's runnable threads (``procs_running``, sampled every
    half second) less this process's own (``schedstat``), both averaged over ``RUNNABLE_TAU_S``; with the
    kernel's fair share, ``calls`` model calls at once each get ``cores / (calls + outside)`` of a core,
    at most one.
    Where the kernel does not say (not Linux), no outside load is seen and a worker counts as a core.
    """

    def __init__(
        self,
        cores: int | None = None,
        *,
        read_machine: Callable[[], float | None] = read_running,
        read_runnable: Callable[[], float | None] = read_runnable_s,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cores = cores or len(os.sched_getaffinity(0))
        self._read_machine = read_machine
        self._read_runnable = read_runnable
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None  # (clock, runnable seconds) at the last sample
        self._own = 0.0  # this process's runnable threads, a moving average
        self._all = 0.0  # the machine's runnable threads, a moving average
        self.outside = 0.0  # other processes' runnable threads

    def sample(self) -> None:
        """Read the counters (at most every ``SAMPLE_EVERY_S``; any thread may call it)."""
        now = self._clock()
        with self._lock:
            if self._last is not None and now - self._last[0] < SAMPLE_EVERY_S:
                return
            runnable, machine = self._read_runnable(), self._read_machine()
            if runnable is None or machine is None:
                return
            if self._last is None:
                # nothing is known of the others yet: what runs now counts as this process's own
                self._all = self._own = machine
            else:
                dt = now - self._last[0]
                demand = max(0.0, runnable - self._last[1]) / dt
                alpha = 1.0 - math.exp(-dt / RUNNABLE_TAU_S)
                self._own += alpha * (demand - self._own)
                self._all += alpha * (machine - self._all)
            self._last = (now, runnable)
            self.outside = max(0.0, self._all - self._own)

    def core_share(self, calls: int) -> float:
        """The share of a core each of ``calls`` model calls running at once gets (0..1]."""
        return min(1.0, self.cores / (max(1, calls) + self.outside))

    def parallel(self, workers: int) -> float:
        """What ``workers`` calls running at once are worth in calls running alone (at most ``workers``).

        The cost meter times calls in wall seconds beside whatever else runs, mostly one call at a time
        while there is room: each such call got ``core_share(1)``. With every worker busy each gets
        ``core_share(workers)``. The ratio uses no absolute measure of the machine's speed, so a cost
        timed while other work ran (or a load average still holding a process that has ended) never
        makes the plan more generous than one core per worker.
        """
        return workers * self.core_share(workers) / self.core_share(1)
