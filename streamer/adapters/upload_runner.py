"""An uploaded file's way through the server: admitted before its body is read, decoded as a stream in a
worker thread, and fed to its session paced like live audio.

An upload is a session like any other, so it pays what a socket pays, and pays it first: the key's
session rate, its uploads in progress (``uploads_per_key``), the daily audio quota left, the server's
capacity and the key's concurrent-session slot are all checked before a byte of the body is read (a
refused request costs no spooling and no decoding). The slot is kept alive while the upload runs, as a
socket's is.

The file is never held decoded: a thread decodes it a chunk at a time into a short queue
(``DECODE_AHEAD`` chunks), and the session takes chunks off it no faster than
``upload_realtime_factor`` audio seconds per wall second, yielding to the event loop between chunks, so
an hour of audio in a small file cannot stall the loop for the server's other clients. Decoding stops
at the audio the key may still use today and at the session's length limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import IO

import numpy as np
import numpy.typing as npt

from streamer.errors import InvalidAudioError, RateLimitedError, SessionLimitError, StreamerError
from streamer.guards.backend import seconds_to_utc_midnight
from streamer.guards.keys import KeyRecord
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.containers import decoded_chunks
from streamer.protocol import MIN_SAMPLE_RATE
from streamer.services import Services
from streamer.session.edge import hold_slot, max_session_s
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession
from streamer.session.socket import SLOT_TTL_S

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
    bring (the daily quota left and the session's length limit)."""

    key: KeyRecord
    session_id: str
    quota: AudioQuota
    max_s: float
    quota_bound: bool  # max_s is what is left of the key's daily quota (not the session limit)

    def too_long(self) -> StreamerError:
        if self.quota_bound:
            return RateLimitedError(
                f"the audio is longer than the {self.max_s:.0f} s left in this key's daily audio quota",
                code="audio_quota_exceeded",
                retry_after=seconds_to_utc_midnight(time.time()),
            )
        return SessionLimitError(f"the audio is longer than the {self.max_s:.0f} s a session may be")


@contextlib.asynccontextmanager
async def admitted(registry: SessionRegistry, key: KeyRecord) -> AsyncIterator[Ticket]:
    """Admit an upload for ``key`` before its body is read; the slot is kept alive until the block ends,
    then given back (the session's own release gives it back too: that is idempotent)."""
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
    session_id = services.tokens.new_session_id()
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
        await registry.reserve(key.key_id, key.session_limit, session_id)
        keeper = asyncio.create_task(_keep_slot(services, key.key_id, session_id))
        limit_s = max_session_s(settings, key.key_id)
        max_s = limit_s if left is None else min(left, limit_s)
        yield Ticket(key, session_id, quota, max_s=max_s, quota_bound=max_s < limit_s)
    finally:
        uploading[key.key_id] -= 1
        if uploading[key.key_id] <= 0:
            del uploading[key.key_id]
        if keeper is not None:
            keeper.cancel()
            await asyncio.wait({keeper})
            # fail_closed while Redis is down: the slot then expires by itself; the answer stands
            with contextlib.suppress(StreamerError):
                await services.backend_call(
                    lambda: services.backend.release_session(key.key_id, session_id), None
                )


async def _keep_slot(services: Services, key_id: str, session_id: str) -> None:
    """Keep the upload's concurrent-session slot from expiring (it is reserved for ``SLOT_TTL_S``)."""
    while True:
        await asyncio.sleep(SLOT_REFRESH_S)
        with contextlib.suppress(StreamerError):  # fail_closed while Redis is down: try again later
            # the same upkeep as a socket's: a slot the state backend lost is taken again
            await services.backend_call(lambda: hold_slot(services, key_id, session_id, SLOT_TTL_S), None)


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


async def feed(
    session: StreamSession,
    ticket: Ticket,
    source: IO[bytes],
    realtime_factor: float,
    client_gone: Callable[[], bool],
    on_start: Callable[[], Awaitable[None]] | None = None,
) -> float:
    """Decode ``source`` into ``session``, paced; returns the audio's length in seconds.

    Each chunk is charged to the key's quota, pushed through the session's VAD and segmenter on the
    loop, then the loop is given to others. ``client_gone`` is asked between chunks: an upload nobody
    waits for any more stops. ``on_start`` is awaited once the first chunk is decoded, so a file that
    cannot be opened is refused before anything of the answer is sent.
    """
    settings = session.services.settings
    chunk_samples = MODEL_RATE * min(1000, settings.max_frame_ms) // 1000
    pace = _Pace(realtime_factor, settings.realtime_burst_s)
    max_samples = int(ticket.max_s * MODEL_RATE)
    total = 0
    stream = DecodedStream(
        decoded_chunks(source, rate=MODEL_RATE, chunk_samples=chunk_samples, min_rate=MIN_SAMPLE_RATE)
    )
    try:
        while (chunk := await stream.next()) is not None:
            if on_start is not None:
                await on_start()
                on_start = None
            total += chunk.size
            if total > max_samples:
                raise ticket.too_long()
            if client_gone():
                raise ClientGoneError
            seconds = chunk.size / MODEL_RATE
            await pace.take(seconds)
            await ticket.quota.charge(seconds)
            await session.push_audio(chunk.astype("<i2", copy=False).tobytes())
            await asyncio.sleep(0)  # the chunk's VAD ran on the loop: let the others have it now
    finally:
        await stream.close()
    if total == 0:
        raise InvalidAudioError("the file holds no audio samples")
    await session.drain()
    return total / MODEL_RATE
