"""A session's outgoing messages: one bounded queue, one writer task.

Everything a connection sends goes through it, in order: protocol v1 messages (results, events, errors)
and a vendor surface's replies to its client's events (:class:`Reply`). Each is encoded at the door by
the writer: the message's protocol v1 JSON, or the surface's ``render`` of it into its vendor's frames,
so a surface's rendering state changes in one task, in the order the client sees. An HTTP surface that
answers once the session is over takes the messages themselves (:meth:`Outbox.typed`): nothing is
encoded for it and nothing parsed back; it makes its answer from them.

Overflow policy: droppable messages (partials) are refused once the queue is half full (in messages or in
bytes); everything else waits for room, which stops the session's reader and so pushes back on the client
through TCP. The queue is bounded in bytes as well as messages, so a client that reads slowly pins at most
``max_bytes`` (plus one message) of server memory. A client that stops reading entirely is cut off after
``send_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from streamer.protocol import ServerMessage, dump

log = logging.getLogger(__name__)
_T = TypeVar("_T")

Send = Callable[[str], Awaitable[None]]
Deliver = Callable[[ServerMessage], Awaitable[None]]  # a typed outbox's door: the message itself
Render = Callable[[ServerMessage], list[str]]  # a vendor surface's frames for one protocol v1 message
# the bytes of queued outgoing messages one session may hold (finals wait for room beyond it)
OUTBOX_MAX_BYTES = 1 << 20
# what a queued reply counts for in the byte bound (its frames are made when it is sent)
REPLY_BYTES = 1024


@dataclass(frozen=True)
class Reply:
    """A vendor surface's answer to a client event: frames made by the writer when their turn comes
    (each callable gives a frame, a list of them, or None for nothing), in order with the results queued
    before."""

    frames: tuple[Callable[[], str | list[str] | None], ...]


@dataclass(frozen=True)
class _Queued:
    item: ServerMessage | Reply
    text: str  # the message's protocol v1 JSON ("" for a reply)
    size: int


class SlowConsumerError(Exception):
    """The client has not read its socket for ``send_timeout_s``."""


class Outbox:
    def __init__(
        self,
        send: Send | None,
        *,
        render: Render | None = None,
        deliver: Deliver | None = None,
        maxsize: int = 256,
        max_bytes: int = OUTBOX_MAX_BYTES,
        send_timeout_s: float = 10.0,
    ) -> None:
        if (send is None) == (deliver is None):
            raise TypeError("an outbox has one door: send (text frames) or deliver (messages)")
        self._send = send
        self._render = render  # None: protocol v1, each message sent as its JSON
        self._deliver = deliver
        self._queue: asyncio.Queue[_Queued | None] = asyncio.Queue(maxsize)
        self._max_bytes = max_bytes
        self.queued_bytes = 0  # of messages queued or being sent
        self._room = asyncio.Event()  # set whenever bytes are released
        self._send_timeout_s = send_timeout_s
        self.dropped = 0
        self.sent = 0
        self.closed = False

    @classmethod
    def typed(
        cls,
        deliver: Deliver,
        *,
        maxsize: int = 256,
        max_bytes: int = OUTBOX_MAX_BYTES,
        send_timeout_s: float = 10.0,
    ) -> Outbox:
        """An outbox whose writer hands each message, as it is, to ``deliver`` (in order, under the same
        bounds: a message counts its protocol v1 JSON's size while queued, as on every surface)."""
        return cls(None, deliver=deliver, maxsize=maxsize, max_bytes=max_bytes, send_timeout_s=send_timeout_s)

    def offer(self, message: ServerMessage) -> bool:
        """Queue a droppable message; False (and counted) when the queue is backed up."""
        backed_up = self._queue.qsize() * 2 >= self._queue.maxsize or self.queued_bytes * 2 >= self._max_bytes
        if self.closed or backed_up:
            self.dropped += 1
            return False
        queued = _queued(message)
        self.queued_bytes += queued.size
        self._queue.put_nowait(queued)
        return True

    async def put(self, message: ServerMessage | Reply) -> None:
        """Queue a message (or a vendor's reply) that must be delivered; waits for room (in messages and
        in bytes)."""
        if self.closed:
            return
        if self._deliver is not None and isinstance(message, Reply):
            raise TypeError("a typed outbox carries server messages, not a vendor's frames")
        queued = _queued(message)
        # one message always fits an empty outbox, however large
        while self.queued_bytes and self.queued_bytes + queued.size > self._max_bytes:
            self._room.clear()
            await self._room.wait()
            if self.closed:
                return
        self.queued_bytes += queued.size
        await self._queue.put(queued)

    async def run(self) -> None:
        """The writer: sends in order until ``finish`` or a send stalls past the timeout."""
        while True:
            queued = await self._queue.get()
            if queued is None:
                return
            try:
                delivered = True
                if self._deliver is not None:
                    assert not isinstance(queued.item, Reply)  # (refused by put)
                    delivered = await self._send_one(self._deliver, queued.item)
                else:
                    assert self._send is not None
                    for frame in self._frames(queued):
                        if not (delivered := await self._send_one(self._send, frame)):
                            break
            finally:
                self.queued_bytes = max(0, self.queued_bytes - queued.size)
                self._room.set()
            if not delivered:
                return

    def _frames(self, queued: _Queued) -> list[str]:
        """What goes on the wire for one queued item, made now (in the writer, in order)."""
        item = queued.item
        if isinstance(item, Reply):
            frames: list[str] = []
            for make in item.frames:
                made = make()
                frames.extend([] if made is None else [made] if isinstance(made, str) else made)
            return frames
        if self._render is None:
            return [queued.text]
        return self._render(item)

    async def _send_one(self, send: Callable[[_T], Awaitable[None]], item: _T) -> bool:
        """Send one frame (or deliver one message); False when the connection is gone."""
        try:
            # not wait_for: on 3.11 it can swallow a cancel that lands as the send completes, and
            # the writer then waits on the queue forever (its connection's cleanup with it)
            async with asyncio.timeout(self._send_timeout_s):
                await send(item)
        except TimeoutError as e:
            self.abandon()  # wake whoever waits for room: nothing will drain this queue again
            raise SlowConsumerError(f"client did not read for {self._send_timeout_s:.0f}s") from e
        except ConnectionError:
            self.abandon()
            return False
        self.sent += 1
        return True

    def abandon(self) -> None:
        """The connection is gone: drop what is queued and wake anyone waiting for room."""
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self.queued_bytes = 0
        self._room.set()

    async def finish(self) -> None:
        """Ask the writer to stop after everything queued so far has been sent."""
        if not self.closed:
            await self._queue.put(None)
            self.closed = True


def _queued(item: ServerMessage | Reply) -> _Queued:
    """An item and what it costs in memory while queued (a message: its UTF-8 JSON)."""
    if isinstance(item, Reply):
        return _Queued(item, "", REPLY_BYTES)
    text = dump(item)
    return _Queued(item, text, len(text.encode()))
