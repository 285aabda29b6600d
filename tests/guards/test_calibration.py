"""Admission calibrated to the CPU: a measured cost per second of model input sets the refusal point."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from streamer.guards.admission import INPUT_PER_SPEECH_S, Admission, AdmissionLimits, Refusal, model_load
from streamer.guards.load import PRIOR_SPEECH_SHARE
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.pipeline.batchtypes import BatcherSnapshot, CostMeter
from streamer.pipeline.calibration import RUNNABLE_TAU_S, CpuShare, calibrate, read_running, speech_probe

LIMITS = AdmissionLimits(max_sessions=1000, saturation_latency_s=1000.0, session_rate_per_key_per_min=0)


def snapshot(cost: float | None, workers: int) -> BatcherSnapshot:
    return BatcherSnapshot(
        hung=False,
        finals_pending=0,
        max_pending_finals=256,
        latency_ewma_s=0.0,
        last_batch_at=0.0,
        workers=workers,
        cost_per_input_s=cost,
    )


def first_refused(admission: Admission, batcher: BatcherSnapshot) -> int:
    """How many sessions are live when the next one is refused."""
    for live in range(1000):
        try:
            admission.check_capacity(draining=False, live_sessions=live, batcher=batcher, breaker_state=None)
        except Refusal as r:
            assert r.reason == "predicted_overload"
            assert r.error.retry_after and r.error.retry_after > 0
            return live
    raise AssertionError("never refused")


@pytest.mark.parametrize(("cost", "workers"), [(0.008, 2), (0.016, 2), (0.016, 1), (0.04, 2)])
def test_admission_refuses_where_the_calibrated_cost_says_the_model_is_full(
    cost: float, workers: int
) -> None:
    per_session = PRIOR_SPEECH_SHARE * INPUT_PER_SPEECH_S * cost
    fits = math.floor(LIMITS.max_model_load * workers / per_session)  # sessions within the planned load
    assert first_refused(Admission(LIMITS), snapshot(cost, workers)) == fits


def test_a_slower_cpu_refuses_sooner_and_two_workers_hold_twice_as_many() -> None:
    fast, slow = snapshot(0.01, 2), snapshot(0.03, 2)
    assert first_refused(Admission(LIMITS), slow) < first_refused(Admission(LIMITS), fast)
    one = first_refused(Admission(LIMITS), snapshot(0.01, 1))
    assert first_refused(Admission(LIMITS), fast) in (2 * one, 2 * one + 1)


def test_uncalibrated_admission_does_not_guess() -> None:
    batcher = snapshot(None, 2)
    assert model_load(50, batcher, None) is None
    Admission(LIMITS).check_capacity(draining=False, live_sessions=500, batcher=batcher, breaker_state=None)


def test_a_measured_load_wins_over_the_calibration_and_counts_all_workers() -> None:
    assert model_load(10, snapshot(0.5, 2), 1.2) == pytest.approx(0.6)


def test_cost_meter_reads_the_batch_size_formed() -> None:
    meter = CostMeter(alpha=0.5)
    assert meter.cost() is None
    meter.record(1, 5.0, 0.10, typical=False)  # 0.02 s per input second alone
    meter.record(4, 20.0, 0.20, typical=False)  # 0.01 in a batch of four
    assert meter.cost() == pytest.approx(0.02)  # nothing formed yet: the smallest batch
    for _ in range(10):
        meter.record(5, 25.0, 0.25)  # batches of five: class 4, 0.01
    assert meter.cost() == pytest.approx(0.01)
    assert meter.cost(1) == pytest.approx(0.02)
    assert meter.cost(16) == pytest.approx(0.01)  # nearest class measured


class TimedFake:
    """An engine whose model call takes ``cost`` seconds per input second on a fake clock."""

    name = "fake"
    multilingual = False

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.now = 0.0
        self.sizes: list[int] = []

    def clock(self) -> float:
        return self.now

    def languages(self) -> frozenset[str]:
        return frozenset({"en"})

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        self.sizes.append(len(requests))
        self.now += self.cost * sum(r.audio.size for r in requests) / 16000
        return [AsrResult(text="", language="en") for _ in requests]


def test_calibration_seeds_the_meter_with_what_this_machine_measured() -> None:
    engine = TimedFake(cost=0.03)
    meter = CostMeter()
    costs = calibrate(engine, meter, clock=engine.clock)
    assert engine.sizes == [1, 1, 4]  # a warm-up call, then the sizes timed
    assert costs == pytest.approx({1: 0.03, 4: 0.03})
    assert meter.cost() == pytest.approx(0.03)


# ---- the CPU the model gets beside other work (a loaded machine)


class Machine:
    """A fake kernel: this process's runnable threads (``own``) and everything else's (``outside``)."""

    def __init__(self, own: float, outside: float) -> None:
        self.own, self.outside = own, outside
        self.now = 0.0
        self.runnable_s = 0.0

    def clock(self) -> float:
        return self.now

    def runnable(self) -> float:
        return self.runnable_s

    def running(self) -> float:
        return self.own + self.outside  # runnable on the machine now

    def run(self, seconds: float, share: CpuShare) -> None:
        for _ in range(int(seconds)):
            self.now += 1.0
            self.runnable_s += self.own  # ``own`` threads runnable the whole second
            share.sample()


def cpu_share(machine: Machine, cores: int = 2) -> CpuShare:
    share = CpuShare(cores, read_machine=machine.running, read_runnable=machine.runnable, clock=machine.clock)
    share.sample()
    return share


def test_a_quiet_machine_gives_every_worker_a_core() -> None:
    machine = Machine(own=2.5, outside=0.0)  # the server's two workers and its event loop, nothing else
    share = cpu_share(machine)
    machine.run(300, share)
    assert share.outside == pytest.approx(0.0, abs=0.01)
    assert share.core_share(2) == 1.0 and share.parallel(2) == 2.0


def test_two_busy_processes_beside_the_server_halve_its_workers_cores() -> None:
    machine = Machine(own=2.0, outside=2.0)  # two CPU hogs on two cores
    share = cpu_share(machine)
    machine.run(10 * RUNNABLE_TAU_S, share)  # the server's own threads are counted apart as they run
    assert share.outside == pytest.approx(2.0, abs=0.01)
    assert share.core_share(2) == pytest.approx(0.5, abs=0.01)  # two calls at once: half a core each
    assert share.core_share(1) == pytest.approx(2 / 3, abs=0.01)
    assert share.parallel(2) == pytest.approx(1.5, abs=0.02)  # two workers do 1.5 times what one does


def test_the_servers_own_threads_are_not_outside_load() -> None:
    machine = Machine(own=0.0, outside=0.0)
    share = cpu_share(machine)
    machine.run(300, share)
    machine.own = 3.0  # a burst of the server's own work: the machine's runnable threads rise with it
    machine.run(300, share)
    assert share.outside == pytest.approx(0.0, abs=0.05)


def test_a_process_that_ended_stops_counting_within_seconds() -> None:
    machine = Machine(own=0.2, outside=2.0)  # the last bench's server, still running
    share = cpu_share(machine)
    machine.run(120, share)
    assert share.outside == pytest.approx(2.0, abs=0.05)
    machine.outside = 0.0  # it ended; a burst of sessions arrives 30 s later
    machine.run(30, share)
    assert share.outside < 0.2 and share.parallel(2) > 1.8


def test_a_new_server_counts_what_runs_at_its_first_sample_as_its_own() -> None:
    machine = Machine(own=2.0, outside=0.0)
    share = cpu_share(machine)  # calibration keeps both cores busy: not outside load
    assert share.outside == 0.0 and share.parallel(2) == 2.0


def test_the_machines_runnable_threads_are_read_from_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3 4\nctxt 99\nprocs_running 3\nprocs_blocked 0\n")
    assert read_running(stat) == 2.0  # not counting the thread that reads
    stat.write_text("cpu  1 2 3 4\n")
    assert read_running(stat) is None
    assert read_running(tmp_path / "missing") is None


def test_without_the_kernels_counters_nothing_is_assumed() -> None:
    share = CpuShare(2, read_machine=lambda: None, read_runnable=lambda: None)
    share.sample()
    assert share.outside == 0.0 and share.core_share(2) == 1.0 and share.parallel(2) == 2.0


def test_a_shared_cpu_refuses_sooner_than_one_core_per_worker() -> None:
    cost, workers = 0.016, 2
    alone = first_refused(Admission(LIMITS), snapshot(cost, workers))
    shared = first_refused(Admission(LIMITS), dataclasses.replace(snapshot(cost, workers), cores=1.0))
    assert shared == math.floor(
        LIMITS.max_model_load * 1.0 / (PRIOR_SPEECH_SHARE * INPUT_PER_SPEECH_S * cost)
    )
    assert shared < alone and alone in (2 * shared, 2 * shared + 1)
    # the cores a quiet machine gives two workers are two: the plan is the one-core-per-worker plan
    assert first_refused(Admission(LIMITS), dataclasses.replace(snapshot(cost, workers), cores=2.0)) == alone


def test_calibration_times_speech_in_the_window_the_batcher_counts() -> None:
    probe = speech_probe()
    assert 3.0 < probe.size / 16000 < 4.5 and probe.dtype == np.float32
    assert 0.05 < float(np.sqrt(np.mean(probe**2))) < 0.5  # a voice at speaking level, not noise or silence
    engine = TimedFake(cost=0.03)
    meter = CostMeter()
    # the batcher counts the padded window (5 s for this sentence), so calibration must too
    costs = calibrate(engine, meter, clock=engine.clock, input_s=lambda request: 5.0)
    per_audio_s = 0.03 * probe.size / 16000 / 5.0
    assert costs == pytest.approx({1: per_audio_s, 4: per_audio_s})


class OneAtATime:
    """An engine on a machine where calls cannot overlap: each takes ``call_s`` once it holds the core."""

    name = "serial"
    multilingual = False

    def __init__(self, call_s: float) -> None:
        self.call_s = call_s
        self.core = threading.Lock()

    def languages(self) -> frozenset[str]:
        return frozenset({"en"})

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        with self.core:
            time.sleep(self.call_s)
        return [AsrResult(text="", language="en") for _ in requests]


def test_workers_calling_at_once_are_timed_together() -> None:
    engine = OneAtATime(call_s=0.05)
    alone, together = CostMeter(), CostMeter()
    calibrate(engine, alone, sizes=(1,), input_s=lambda request: 5.0)
    calibrate(engine, together, sizes=(1,), workers=2, input_s=lambda request: 5.0)
    one = alone.cost()
    assert one is not None and one == pytest.approx(0.01, rel=0.5)
    # two workers that cannot run at once: on average a call waits for the other, so it costs 1.5 times
    both = together.cost()
    assert both is not None and both > 1.3 * one


def test_a_failing_call_during_calibration_is_raised() -> None:
    def broken(engine: object, requests: Sequence[AsrRequest]) -> object:
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        calibrate(TimedFake(cost=0.01), CostMeter(), broken, workers=2)
