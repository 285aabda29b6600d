"""An uploaded file's way through the server, for both upload surfaces (OpenAI's
``/v1/audio/transcriptions``, Deepgram's pre-recorded ``/v1/listen``): admitted before its body is read,
decoded as a stream, and fed to its sessions paced like live audio (:mod:`streamer.adapters.upload`
carries the sessions; each surface keeps only its form and its answer).

An upload is a session like any other, so it pays what a socket pays, and pays it first: the key's
session rate, its uploads in progress (``uploads_per_key``), the daily audio quota left, the server's
capacity and the key's concurrent-session slot are all checked before a byte of the body is read (a
refused request costs no spooling and no decoding). The slots (one per channel) are kept alive while
the upload runs, as a socket's is.

The file is never held decoded: it is decoded a piece at a time (OpenAI's in a thread of its own into a
short queue of ``DECODE_AHEAD`` chunks, Deepgram's by its container's own thread behind bounded
buffers), and the sessions take pieces no faster than ``upload_realtime_factor`` audio seconds per wall
second, yielding to the event loop between pieces, so an hour of audio in a small file cannot stall the
loop for the server's other clients. Decoding stops at the audio the key may still use today (every
channel's seconds count) and at the session's length limit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import numpy.typing as npt

from streamer.config import Settings
from streamer.edge.handshake import hold_slot, max_session_s
from streamer.errors import InvalidAudioError, RateLimitedError, SessionLimitError, StreamerError
from streamer.guards.keys import KeyRecord
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.containers import decoded_chunks
from streamer.protocol import MIN_SAMPLE_RATE
from streamer.services import Services
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.run import SLOT_TTL_S
from streamer.state.backend import seconds_to_utc_midnight

log = logging.getLogger(__name__)

SLOT_REFRESH_S = SLOT_TTL_S / 3  # as a socket refreshes its slot
DECODE_AHEAD = 4  # decoded chunks waiting between the decoding thread and the session
STOP_WAIT_S = 5.0  # how long closing waits for the decoding thread to notice (one chunk's decode)
RETRY_UPLOAD_S = 5.0

# uploads in progress per key, per registry (so per app: tests run several in one process)
_uploading: weakref.WeakKeyDictionary[SessionRegistry, Counter[str]] = weakref.WeakKeyDictionary()


class ClientGoneError(Exception):
    """The client closed the connection: nobody is left to answer, so the upload stops."""


@dataclass
class Ticket:
    """An admitted upload: its session id (the slot is held for it), its quota and how much audio it may
    bring (the daily quota left, shared by its channels, and the session's length limit)."""

    key: KeyRecord
    session_id: str
    quota: AudioQuota
    limit_s: float  # the session's length limit
    left_s: float | None  # the key's daily audio quota left (None: unlimited)
    held: list[str] = field(default_factory=list)  # the further channels' session ids, slots kept too

    def max_s(self, channels: int = 1) -> float:
        """The audio each of ``channels`` sessions may take (each channel's second is charged)."""
        return self.limit_s if self.left_s is None else min(self.limit_s, self.left_s / channels)

    def too_long(self, channels: int = 1) -> StreamerError:
        if self.left_s is not None and self.left_s / channels < self.limit_s:
            return RateLimitedError(
                f"the audio is longer than the {self.left_s:.0f} s left in this key's daily audio quota",
                code="audio_quota_exceeded",
                retry_after=seconds_to_utc_midnight(time.time()),
            )
        return SessionLimitError(f"the audio is longer than the {self.limit_s:.0f} s a session may be")


@contextlib.asynccontextmanager
async def admitted(registry: SessionRegistry, key: KeyRecord) -> AsyncIterator[Ticket]:
    """Admit an upload for ``key`` before its body is read; the slots are kept alive until the block ends,
    then given back (the sessions' own release gives them back too: that is idempotent)."""
    services = registry.services
    settings = services.settings
    registry.check_session_rate(key.key_id)
    uploading = _uploading.setdefault(registry, Counter())
    if uploading[key.key_id] >= settings.uploads_per_key:
        raise RateLimitedError(
            f"this key already has {settings.uploads_per_key} uploads in progress",
            code="concurrent_uploads_exceeded",
            retry_after=RETRY_UPLOAD_S,
        )
    uploading[key.key_id] += 1  # before anything is awaited: concurrent requests see it
    ticket: Ticket | None = None
    keeper: asyncio.Task[None] | None = None
    try:
        quota = AudioQuota(services, key.key_id)
        left = await quota.remaining()
        if left is not None and left <= 0:
            raise RateLimitedError(
                "this key's daily audio quota is used up",
                code="audio_quota_exceeded",
                retry_after=seconds_to_utc_midnight(time.time()),
            )
        session_id = services.tokens.new_session_id()
        await registry.reserve(key.key_id, key.session_limit, session_id)
        ticket = Ticket(key, session_id, quota, max_session_s(settings, key.key_id), left)
        keeper = asyncio.create_task(_keep_slots(services, ticket))
        yield ticket
    finally:
        uploading[key.key_id] -= 1
        if uploading[key.key_id] <= 0:
            del uploading[key.key_id]
        if keeper is not None:
            keeper.cancel()
            await asyncio.wait({keeper})
        if ticket is not None:
            for held in (ticket.session_id, *ticket.held):
                # fail_closed while Redis is down: the slot then expires by itself; the answer stands
                with contextlib.suppress(StreamerError):
                    await services.state.call(
                        functools.partial(services.backend.release_session, key.key_id, held), None
                    )


async def _keep_slots(services: Services, ticket: Ticket) -> None:
    """Keep the upload's concurrent-session slots from expiring (each is reserved for ``SLOT_TTL_S``)."""
    key_id = ticket.key.key_id
    while True:
        await asyncio.sleep(SLOT_REFRESH_S)
        for session_id in (ticket.session_id, *ticket.held):
            with contextlib.suppress(StreamerError):  # fail_closed while Redis is down: try again later
                # the same upkeep as a socket's: a slot the state backend lost is taken again
                await services.state.call(
                    functools.partial(hold_slot, services, key_id, session_id, SLOT_TTL_S), None
                )


Chunk = npt.NDArray[np.int16]
_END = object()


class DecodedStream:
    """A generator of chunks run in its own thread, at most ``depth`` chunks ahead of the consumer.

    The thread blocks while the queue is full, so decoding goes no faster than the session takes the
    audio. :meth:`close` stops it (the generator is closed in the thread, which closes the container).
    """

    def __init__(self, chunks: Generator[Chunk, None, None], depth: int = DECODE_AHEAD) -> None:
        self._chunks = chunks
        self._queue: asyncio.Queue[object] = asyncio.Queue(depth)
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._stopped = asyncio.Event()
        self._thread = threading.Thread(target=self._produce, name="upload-decode", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for chunk in self._chunks:
                if not self._put(chunk):
                    return
            self._put(_END)
        except Exception as e:  # the consumer raises it (InvalidAudioError for a bad file)
            self._put(e)
        finally:
            self._chunks.close()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._stopped.set)

    def _put(self, item: object) -> bool:
        """Hand ``item`` to the loop, waiting for room; False once the consumer has stopped."""
        if self._stop.is_set():
            return False
        put = self._queue.put(item)
        try:
            asyncio.run_coroutine_threadsafe(put, self._loop).result()
        except RuntimeError:  # the loop is closed
            put.close()
            return False
        except concurrent.futures.CancelledError:  # the loop cancelled the put (it is shutting down)
            return False
        return not self._stop.is_set()

    async def next(self) -> Chunk | None:
        """The next chunk; None at the end. Raises what the decoding raised."""
        item = await self._queue.get()
        if item is _END:
            return None
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, np.ndarray)
        return item

    async def close(self) -> None:
        self._stop.set()
        while not self._queue.empty():  # a put waiting for room completes, then sees the stop
            self._queue.get_nowait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_WAIT_S):
                await self._stopped.wait()


class _Pace:
    """Audio may run ``factor`` times faster than real time, ``burst_s`` of audio ahead at the start."""

    def __init__(self, factor: float, burst_s: float) -> None:
        self._factor = factor
        self._burst_s = burst_s
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._taken_s = 0.0

    async def take(self, seconds: float) -> None:
        """Account for ``seconds`` of audio, after waiting until they are due."""
        self._taken_s += seconds
        due = self._started + (self._taken_s - self._burst_s) / self._factor
        if (wait := due - self._loop.time()) > 0:
            await asyncio.sleep(wait)


Channels = list[bytes]  # one piece of PCM16 per channel, each as long, at the sessions' rate


async def decoded(source: IO[bytes], chunk_samples: int) -> AsyncGenerator[Channels, None]:
    """A file's audio decoded in a thread (:func:`decoded_chunks`: mono, 16 kHz, sample rates under
    8 kHz refused), ``chunk_samples`` at a time, at most ``DECODE_AHEAD`` chunks ahead of the reader."""
    stream = DecodedStream(
        decoded_chunks(source, rate=MODEL_RATE, chunk_samples=chunk_samples, min_rate=MIN_SAMPLE_RATE)
    )
    try:
        while (chunk := await stream.next()) is not None:
            yield [chunk.astype("<i2", copy=False).tobytes()]
    finally:
        await stream.close()


@dataclass
class Feed:
    """How an upload's audio reaches its sessions: ``push`` takes each piece of every channel's PCM16 at
    ``rate``; ``client_gone`` is asked between pieces; ``on_start`` is awaited once, at the first piece."""

    rate: int
    push: Callable[[Channels], Awaitable[None]]
    client_gone: Callable[[], bool]
    on_start: Callable[[], Awaitable[None]] | None = None


async def feed(source: AsyncGenerator[Channels, None], ticket: Ticket, to: Feed, settings: Settings) -> float:
    """Take ``source``'s audio into the sessions, paced; returns its length in seconds (per channel).

    Each piece is charged to the key's quota (every channel's seconds), pushed through the sessions' VAD
    and segmenter on the loop, then the loop is given to others. An upload nobody waits for any more
    stops. ``on_start`` comes once the first piece is decoded, so a file that cannot be opened is
    refused before anything of the answer is sent. The source is closed however this ends.
    """
    pace = _Pace(settings.upload_realtime_factor, settings.realtime_burst_s)
    on_start = to.on_start
    total = 0  # samples per channel
    async with contextlib.aclosing(source):
        async for channels in source:
            if on_start is not None:
                await on_start()
                on_start = None
            samples = len(channels[0]) // 2
            total += samples
            if total > int(ticket.max_s(len(channels)) * to.rate):
                raise ticket.too_long(len(channels))
            if to.client_gone():
                raise ClientGoneError
            seconds = samples / to.rate
            await pace.take(seconds)
            await ticket.quota.charge(seconds * len(channels))
            await to.push(channels)
            await asyncio.sleep(0)  # the piece's VAD ran on the loop: let the others have it now
    if total == 0:
        raise InvalidAudioError("the file holds no audio samples")
    return total / to.rate
