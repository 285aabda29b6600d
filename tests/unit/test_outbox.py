"""Outbox: one bounded queue and one writer; partials are droppable, everything else waits or is cut off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from streamer.protocol import Pong, TranscriptPartial
from streamer.session.outbox import Outbox, Reply, SlowConsumerError


class Socket:
    """A fake ``send``: records texts; while ``stalled`` it never returns (a client that stopped reading)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.open = asyncio.Event()
        self.open.set()
        self.error: Exception | None = None

    async def send(self, text: str) -> None:
        await self.open.wait()
        if self.error is not None:
            raise self.error
        self.sent.append(text)

    def ids(self) -> list[object]:
        return [json.loads(t).get("id") for t in self.sent]


def pong(i: int) -> Pong:
    return Pong(id=i)


def partial(i: int) -> TranscriptPartial:
    return TranscriptPartial(segment_id=1, text=f"hypothesis {i}")


@pytest.fixture
async def writers() -> AsyncIterator[list[asyncio.Task[None]]]:
    """Tasks to cancel at the end of the test (writers, and callers left blocked by a failure)."""
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_messages_are_sent_in_order_then_finish_stops_the_writer(
    writers: list[asyncio.Task[None]],
) -> None:
    sock = Socket()
    outbox = Outbox(sock.send, maxsize=4)
    writer = asyncio.create_task(outbox.run())
    writers.append(writer)
    for i in range(10):
        await outbox.put(pong(i))
    await outbox.finish()
    await asyncio.wait_for(writer, 1)
    assert sock.ids() == list(range(10)) and outbox.sent == 10
    # after finish nothing more is queued or sent
    await outbox.put(pong(99))
    assert not outbox.offer(partial(99))
    assert outbox.sent == 10


async def test_partials_are_refused_once_the_queue_is_half_full() -> None:
    outbox = Outbox(Socket().send, maxsize=4)  # no writer: the queue only fills
    assert outbox.offer(partial(1)) and outbox.offer(partial(2))
    assert not outbox.offer(partial(3))
    assert outbox.dropped == 1
    # must-deliver messages still fit in the other half
    await asyncio.wait_for(outbox.put(pong(1)), 0.1)
    await asyncio.wait_for(outbox.put(pong(2)), 0.1)


async def test_put_waits_for_room_instead_of_growing(writers: list[asyncio.Task[None]]) -> None:
    sock = Socket()
    sock.open.clear()
    outbox = Outbox(sock.send, maxsize=2, send_timeout_s=30)
    writers.append(asyncio.create_task(outbox.run()))
    for i in range(3):  # one is taken by the stalled writer, two fill the queue
        await asyncio.wait_for(outbox.put(pong(i)), 0.1)
    blocked = asyncio.create_task(outbox.put(pong(3)))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # pushed back on the caller
    sock.open.set()
    await asyncio.wait_for(blocked, 1)
    await outbox.finish()
    await asyncio.wait_for(writers[0], 1)
    assert sock.ids() == [0, 1, 2, 3]


async def test_a_client_that_stops_reading_is_cut_off(writers: list[asyncio.Task[None]]) -> None:
    sock = Socket()
    sock.open.clear()
    outbox = Outbox(sock.send, maxsize=4, send_timeout_s=0.1)
    writer = asyncio.create_task(outbox.run())
    writers.append(writer)
    await outbox.put(pong(1))
    with pytest.raises(SlowConsumerError):
        await asyncio.wait_for(writer, 1)
    assert outbox.closed
    await asyncio.wait_for(outbox.put(pong(2)), 0.1)  # later messages go nowhere, at once
    assert not outbox.offer(partial(2))


@pytest.mark.parametrize("failure", ["slow", "disconnected"])
async def test_callers_blocked_on_a_full_queue_are_released_when_the_writer_stops(
    failure: str, writers: list[asyncio.Task[None]]
) -> None:
    """A session's reader and final emitter wait in ``put`` while the queue is full. If the writer then
    gives up (slow consumer) or the socket is gone, nothing ever takes from the queue again, and those
    callers wait forever: the connection's reader never returns, so the session is never cleaned up.
    """
    sock = Socket()
    sock.open.clear()
    outbox = Outbox(sock.send, maxsize=2, send_timeout_s=0.2)
    writer = asyncio.create_task(outbox.run())
    writers.append(writer)
    for i in range(3):
        await asyncio.wait_for(outbox.put(pong(i)), 0.1)
    blocked = [asyncio.create_task(outbox.put(pong(i))) for i in (10, 11)]
    writers.extend(blocked)
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in blocked)
    if failure == "disconnected":
        sock.error = ConnectionResetError("gone")
        sock.open.set()
    await asyncio.wait([writer], timeout=1)
    assert writer.done() and outbox.closed
    done, _ = await asyncio.wait(blocked, timeout=1)
    assert len(done) == len(blocked), "put() still waiting on a queue nobody reads"


async def test_a_typed_outbox_hands_over_each_message_itself_in_order(
    writers: list[asyncio.Task[None]],
) -> None:
    """An HTTP surface that answers at the end takes the messages themselves: nothing is encoded for it
    and nothing parsed back (issue 22: the outbox carries server messages; each surface encodes them)."""
    got: list[object] = []

    async def deliver(message: object) -> None:
        got.append(message)

    outbox = Outbox.typed(deliver, maxsize=4)
    writers.append(asyncio.create_task(outbox.run()))
    sent = [pong(i) for i in range(10)]
    for message in sent:
        await outbox.put(message)
    with pytest.raises(TypeError):
        await outbox.put(Reply((lambda: "{}",)))  # a vendor's frames have no place here
    await outbox.finish()
    await asyncio.wait_for(writers[0], 5)
    assert len(got) == len(sent) and all(a is b for a, b in zip(got, sent, strict=True))


async def test_a_typed_outbox_keeps_the_byte_bound(writers: list[asyncio.Task[None]]) -> None:
    """A collector that does not keep up stops whoever puts, as a slow socket does."""
    taking = asyncio.Event()

    async def deliver(message: object) -> None:
        await taking.wait()

    outbox = Outbox.typed(deliver, maxsize=1000, max_bytes=200)
    writers.append(asyncio.create_task(outbox.run()))
    big = TranscriptPartial(segment_id=1, text="x" * 150)
    await outbox.put(big)  # one message always fits
    blocked = asyncio.create_task(outbox.put(big))
    writers.append(blocked)
    await asyncio.sleep(0.05)
    assert not blocked.done()
    taking.set()
    await asyncio.wait_for(blocked, 5)
