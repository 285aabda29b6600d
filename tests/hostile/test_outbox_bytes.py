"""A slow reader pins a bounded number of bytes, not a bounded number of (arbitrarily large) messages."""

from __future__ import annotations

import asyncio

from streamer.protocol import TranscriptFinal, TranscriptPartial
from streamer.session.outbox import Outbox

LIMIT = 64 << 10


def final(seq: int, chars: int = 10_000) -> TranscriptFinal:
    return TranscriptFinal(
        segment_id=seq, seq=seq, text="w" * chars, language="en", audio_start_ms=0, audio_end_ms=1
    )


async def test_a_reader_that_does_not_read_holds_at_most_max_bytes() -> None:
    released = asyncio.Event()
    sent: list[str] = []

    async def send(text: str) -> None:
        await released.wait()
        sent.append(text)

    outbox = Outbox(send, maxsize=256, max_bytes=LIMIT, send_timeout_s=30.0)
    writer = asyncio.create_task(outbox.run())

    async def produce() -> None:
        for seq in range(1, 41):  # 40 finals of 10 kB: 400 kB, well under 256 messages
            await outbox.put(final(seq))

    producer = asyncio.create_task(produce())
    done, _ = await asyncio.wait({producer}, timeout=0.2)
    assert not done, "every final was queued: the outbox is bounded in messages only"
    assert outbox.queued_bytes <= LIMIT + 10_100
    # a partial is refused while the bytes are backed up, never queued past the limit
    assert not outbox.offer(TranscriptPartial(segment_id=1, text="p"))

    released.set()
    await asyncio.wait_for(producer, 5.0)
    await outbox.finish()
    await asyncio.wait_for(writer, 5.0)
    assert [TranscriptFinal.model_validate_json(t).seq for t in sent] == list(range(1, 41))
    assert outbox.queued_bytes == 0


async def test_one_message_larger_than_the_limit_still_goes_out() -> None:
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    outbox = Outbox(send, max_bytes=1000)
    writer = asyncio.create_task(outbox.run())
    await asyncio.wait_for(outbox.put(final(1, chars=5000)), 1.0)
    await asyncio.wait_for(outbox.put(final(2, chars=5000)), 1.0)
    await outbox.finish()
    await asyncio.wait_for(writer, 1.0)
    assert len(sent) == 2


async def test_abandon_wakes_a_producer_waiting_for_bytes() -> None:
    async def send(text: str) -> None:
        await asyncio.Event().wait()  # never returns

    outbox = Outbox(send, max_bytes=1000)
    writer = asyncio.create_task(outbox.run())
    await outbox.put(final(1, chars=900))
    waiting = asyncio.create_task(outbox.put(final(2, chars=900)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    outbox.abandon()
    await asyncio.wait_for(waiting, 1.0)
    writer.cancel()
    await asyncio.wait({writer})
