"""A session's outgoing messages: one bounded queue, one writer task.

Overflow policy: droppable messages (partials) are refused once the queue is half full; everything else
waits for room, which stops the session's reader and so pushes back on the client through TCP. A client
that stops reading entirely is cut off after ``send_timeout_s`` instead of growing server memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from streamer.protocol import ServerMessage, dump

log = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]


class SlowConsumerError(Exception):
    """The client has not read its socket for ``send_timeout_s``."""


class Outbox:
    def __init__(self, send: Send, *, maxsize: int = 256, send_timeout_s: float = 10.0) -> None:
        self._send = send
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self._send_timeout_s = send_timeout_s
        self.dropped = 0
        self.sent = 0
        self.closed = False

    def offer(self, message: ServerMessage) -> bool:
        """Queue a droppable message; False (and counted) when the queue is backed up."""
        if self.closed or self._queue.qsize() * 2 >= self._queue.maxsize:
            self.dropped += 1
            return False
        self._queue.put_nowait(dump(message))
        return True

    async def put(self, message: ServerMessage) -> None:
        """Queue a message that must be delivered; waits for room."""
        if self.closed:
            return
        await self._queue.put(dump(message))

    async def run(self) -> None:
        """The writer: sends in order until ``finish`` or a send stalls past the timeout."""
        while True:
            text = await self._queue.get()
            if text is None:
                return
            try:
                # not wait_for: on 3.11 it can swallow a cancel that lands as the send completes, and
                # the writer then waits on the queue forever (its connection's cleanup with it)
                async with asyncio.timeout(self._send_timeout_s):
                    await self._send(text)
            except TimeoutError as e:
                self.abandon()  # wake whoever waits for room: nothing will drain this queue again
                raise SlowConsumerError(f"client did not read for {self._send_timeout_s:.0f}s") from e
            except ConnectionError:
                self.abandon()
                return
            self.sent += 1

    def abandon(self) -> None:
        """The connection is gone: drop what is queued and wake anyone waiting for room."""
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()

    async def finish(self) -> None:
        """Ask the writer to stop after everything queued so far has been sent."""
        if not self.closed:
            await self._queue.put(None)
            self.closed = True
