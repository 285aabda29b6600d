"""BatchQueue: the batcher's queue discipline, driven by an explicit ``now`` (no threads, no sleeping)."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.pipeline.batchqueue import Batch, BatchQueue, Job, Priority

KEY = ("transcribe", "en")
OTHER = ("translate", None)


def final(name: str, at: float = 0.0, key: Hashable = KEY) -> Job[str]:
    return Job(name.split(":")[0], key, name, Priority.FINAL, at)


def partial(session: str, name: str, at: float = 0.0, key: Hashable = KEY, stale: float = 10.0) -> Job[str]:
    return Job(session, key, name, Priority.PARTIAL, at, stale_after=stale)


def names(batch: Batch[str] | None) -> list[str]:
    assert batch is not None
    return [j.payload for j in batch.jobs]


def test_empty_queue_has_nothing_due() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05)
    assert q.wait_time(0.0) is None
    assert q.take(100.0) is None and q.take(100.0, force=True) is None
    assert len(q) == 0


def test_a_lone_job_waits_for_the_deadline() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05)
    q.push(final("a:1", at=10.0))
    assert q.wait_time(10.0) == pytest.approx(0.05)
    assert q.wait_time(10.03) == pytest.approx(0.02)
    assert q.take(10.03) is None  # not due yet: nothing taken
    assert len(q) == 1
    assert q.wait_time(10.2) == 0.0
    assert names(q.take(10.051)) == ["a:1"]
    assert len(q) == 0 and q.wait_time(10.051) is None


def test_the_deadline_counts_from_the_oldest_job() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05)
    q.push(final("a:1", at=0.0))
    q.push(final("b:1", at=0.04))
    assert q.wait_time(0.04) == pytest.approx(0.01)
    assert names(q.take(0.051)) == ["a:1", "b:1"]


def test_force_takes_before_the_deadline() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=5.0)
    q.push(final("a:1"))
    assert names(q.take(0.0, force=True)) == ["a:1"]


def test_a_full_batch_is_due_at_once_and_capped_at_max_batch() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=5.0)
    for i in range(3):
        q.push(final(f"s{i}:1"))
    assert q.wait_time(0.0) == 5.0
    for i in range(3, 6):
        q.push(final(f"s{i}:1"))
    assert q.wait_time(0.0) == 0.0
    assert names(q.take(0.0)) == ["s0:1", "s1:1", "s2:1", "s3:1"]  # FIFO, at most max_batch
    assert q.finals_waiting == 2
    assert q.take(0.0) is None  # the rest waits for its deadline again
    assert names(q.take(5.0)) == ["s4:1", "s5:1"]


def test_finals_go_before_partials() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=3, max_wait_s=0.05, max_partials=3)
    q.push(partial("p", "p:partial", at=0.0))  # waiting longest, still goes last
    q.push(final("a:1", at=0.01))
    q.push(final("b:1", at=0.02))
    assert names(q.take(1.0)) == ["a:1", "b:1", "p:partial"]
    q.push(partial("p", "p:partial2", at=2.0))
    for i in range(3):
        q.push(final(f"f{i}:1", at=2.0))
    assert names(q.take(2.0)) == ["f0:1", "f1:1", "f2:1"]  # full of finals: the partial waits
    assert q.partials_waiting == 1


def test_only_a_share_of_a_batch_may_be_partials() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=8, max_wait_s=0.05)
    assert q.max_partials == 2
    for i in range(6):
        q.push(partial(f"s{i}", f"s{i}:p"))
    q.push(final("a:1"))
    assert names(q.take(1.0)) == ["a:1", "s0:p", "s1:p"]
    assert q.partials_waiting == 4


def test_a_batch_never_mixes_keys() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=8, max_wait_s=0.05, max_partials=8)
    q.push(final("a:1", key=KEY))
    q.push(final("b:1", key=OTHER))
    q.push(final("c:1", key=KEY))
    q.push(partial("d", "d:p", key=OTHER))
    q.push(partial("e", "e:p", key=KEY))
    first = q.take(1.0)
    assert first is not None and first.key == KEY and names(first) == ["a:1", "c:1", "e:p"]
    second = q.take(1.0)
    assert second is not None and second.key == OTHER and names(second) == ["b:1", "d:p"]
    assert len(q) == 0


def test_partials_of_one_session_coalesce_latest_wins() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05, max_partials=4)
    old = partial("s", "s:old", at=0.0)
    assert q.push(old) is None
    assert q.push(partial("t", "t:only", at=0.01)) is None
    new = partial("s", "s:new", at=0.02)
    assert q.push(new) is old  # the caller resolves the replaced job's ticket
    assert q.partials_waiting == 2 and len(q) == 2
    assert names(q.take(1.0)) == ["t:only", "s:new"]  # the newer job queues behind the others


def test_finals_of_one_session_are_never_coalesced() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05)
    assert q.push(final("s:1")) is None and q.push(final("s:2")) is None
    assert names(q.take(1.0)) == ["s:1", "s:2"]


def test_stale_partials_are_dropped_not_run() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05)
    stale = partial("s", "s:p", at=0.0, stale=0.5)
    fresh = partial("t", "t:p", at=0.9, stale=0.5)
    q.push(stale)
    q.push(fresh)
    q.push(final("a:1", at=0.9))
    batch = q.take(1.0)
    assert batch is not None
    assert names(batch) == ["a:1", "t:p"] and batch.dropped == [stale]
    # exactly ``stale_after`` old is not stale yet
    q.push(partial("u", "u:p", at=2.0, stale=0.5))
    assert names(q.take(2.5)) == ["u:p"]


def test_a_batch_of_only_stale_partials_is_empty_with_its_drops() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05)
    job = partial("s", "s:p", at=0.0, stale=0.1)
    q.push(job)
    batch = q.take(5.0)
    assert batch is not None and batch.jobs == [] and batch.dropped == [job]
    assert len(q) == 0 and q.wait_time(5.0) is None


def test_finals_are_never_stale() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05)
    q.push(final("a:1", at=0.0))
    batch = q.take(3600.0)
    assert batch is not None and names(batch) == ["a:1"] and batch.dropped == []


def test_discard_partial() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05)
    job = partial("s", "s:p")
    q.push(job)
    q.push(final("s:1"))
    assert q.discard_partial("s") is job
    assert q.discard_partial("s") is None and q.discard_partial("nobody") is None
    assert names(q.take(1.0)) == ["s:1"]  # the session's final is untouched


def test_drain_returns_everything_waiting() -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.05)
    jobs = [final("a:1"), partial("b", "b:p"), final("c:1", key=OTHER)]
    for job in jobs:
        q.push(job)
    assert sorted(j.payload for j in q.drain()) == sorted(j.payload for j in jobs)
    assert len(q) == 0 and q.wait_time(0.0) is None


push_op = st.tuples(
    st.sampled_from(["final", "partial"]),
    st.sampled_from(["s1", "s2", "s3", "s4"]),
    st.sampled_from([KEY, OTHER]),
)
op = st.one_of(push_op, st.tuples(st.just("take"), st.floats(0.0, 0.2)))


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(op, max_size=60), max_batch=st.integers(1, 5))
def test_invariants_under_any_interleaving(ops: list[tuple[object, ...]], max_batch: int) -> None:
    q: BatchQueue[str] = BatchQueue(max_batch=max_batch, max_wait_s=0.05)
    now, n = 0.0, 0
    pushed_finals: list[str] = []
    taken: list[Job[str]] = []

    def check(batch: Batch[str] | None) -> None:
        if batch is None:
            return
        assert len(batch.jobs) <= max_batch
        assert all(j.key == batch.key for j in batch.jobs), "a batch mixed keys"
        kinds = [j.priority for j in batch.jobs]
        assert kinds == sorted(kinds), "a partial went before a final"
        assert kinds.count(Priority.PARTIAL) <= q.max_partials
        assert all(j.priority is Priority.PARTIAL for j in batch.dropped)
        taken.extend(batch.jobs)

    for item in ops:
        if item[0] == "take":
            now += float(item[1])  # type: ignore[arg-type]
            check(q.take(now))
            continue
        kind, session, key = item
        n += 1
        if kind == "final":
            pushed_finals.append(f"{session}:{n}")
            q.push(Job(str(session), key, f"{session}:{n}", Priority.FINAL, now))  # type: ignore[arg-type]
        else:
            q.push(Job(str(session), key, f"{session}:p{n}", Priority.PARTIAL, now, stale_after=0.1))  # type: ignore[arg-type]
        assert q.partials_waiting <= 4  # one per session at most
    while (batch := q.take(now, force=True)) is not None and (batch.jobs or batch.dropped):
        check(batch)
    assert len(q) == 0
    finals = [j.payload for j in taken if j.priority is Priority.FINAL]
    assert sorted(finals) == sorted(pushed_finals), "a final was lost or duplicated"
    for key in (KEY, OTHER):
        # per key, finals come out in the order they went in
        ordered = [j.payload for j in taken if j.priority is Priority.FINAL and j.key == key]
        assert ordered == [f for f in pushed_finals if f in set(ordered)]
