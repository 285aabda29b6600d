"""Containers decoded as they stream in: a :class:`~streamer.pipeline.codecs.Decoder` over PyAV.

FFmpeg's demuxers pull their input; a live client pushes it a message at a time. So each stream gets one
decode thread that runs PyAV's demux/decode/resample loop over a blocking reader, fed from a bounded buffer
by :meth:`ContainerDecoder.decode`. That call hands the thread the message's bytes and waits until the
thread has used them up (it asks for more), has finished, or has filled the bounded output buffer; then it
returns the PCM16 decoded so far. On an event loop, :meth:`~ContainerDecoder.decode_async` waits the same
way on a future the thread resolves, holding no thread of its own.

Memory stays bounded both ways: at most ``MAX_PENDING_BYTES`` of undecoded input and ``out_bytes`` of
decoded output are held; a stream that decodes to more (a bomb) stops its thread until the caller takes
the output, and the caller's pacer refuses audio that arrives faster than real time. A caller drains the
output by calling ``decode(b"")`` (or ``flush()`` at the end) until it returns nothing; on an event loop,
:meth:`~ContainerDecoder.decoded` is that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
import av.container

from streamer.errors import InvalidAudioError
from streamer.pipeline.containers import (
    DEMUXERS,
    HEAD_BYTES,
    UNDECODABLE,
    WAV_HEAD_MAX,
    WavLayout,
    open_pcm,
    open_stream,
    parse_wav,
    sniff,
)

log = logging.getLogger(__name__)

MIN_RATE = 8000  # a container claiming fewer samples a second is refused (1 Hz WAV: a few KiB, hours)
MAX_RATE = 192_000
MAX_CHANNELS = 8
MAX_PENDING_BYTES = 4 << 20  # undecoded input waiting for the thread
MAX_BAD_PACKETS = 8  # in a row
STALL_S = 30.0  # a decode thread that neither asks for input nor produces output this long is broken
# read front to back, an MP4 whose index comes after its media cannot be demuxed
HINTS = {"mp4": " (read front to back: its index, moov, must come first, as -movflags +faststart writes)"}
LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
LIVE_CONTAINERS = frozenset(DEMUXERS) - {"mp4"}  # MP4 needs its index, which may come last: not live


class AudioStreamError(InvalidAudioError):
    """A live stream cannot be decoded: unlike one bad raw frame or message, this ends the session
    (every live surface over :class:`ContainerDecoder` raises it, and none counts it recoverable)."""


@dataclass(frozen=True)
class Expect:
    """What a client declared: the containers and the codec its audio must be (None: any we read)."""

    containers: frozenset[str] | None = None
    codec: str | None = None


class ContainerDecoder:
    """One stream of containerized audio in, PCM16 at ``sample_rate`` with ``channels`` channels out.

    ``channels`` 1 mixes every channel down; ``channels`` None keeps the stream's own count (known once
    its header is read: see :attr:`channels`).
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int | None = 1,
        *,
        expect: Expect = Expect(),
        allowed: frozenset[str] = LIVE_CONTAINERS,
        out_seconds: float = 1.0,
    ) -> None:
        self.sample_rate = sample_rate
        self._want_channels = channels
        self.channels = channels or 0  # 0 until the header says
        self._expect = expect
        self._allowed = allowed
        self._out_s = out_seconds
        self._cond = threading.Condition()
        self._input = bytearray()
        self._eof = False  # no more input
        self._closed = False  # nobody wants the output any more
        self._starving = False  # the thread waits for input
        self._done = False
        self._error: InvalidAudioError | None = None
        self._output = bytearray()
        self._thread: threading.Thread | None = None
        self.container: str | None = None
        self._wav: WavLayout | None = None  # a WAV whose samples are read raw, after its header
        self.codec: str | None = None
        self.source_rate = 0
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    # ---- the caller's side

    def decode(self, data: bytes) -> bytes:
        """Feed ``data``; the PCM16 decoded once the thread has used it up (or the output is full)."""
        self._feed(data)
        return self._collect() if self._start() else b""

    def flush(self) -> bytes:
        """End of input: the next part of what is left (call again until it returns nothing)."""
        return self._collect() if self._end() else b""

    async def decode_async(self, data: bytes) -> bytes:
        """:meth:`decode` for an event loop: waits for the thread without holding a thread of its own."""
        self._feed(data)
        return await self._collect_async() if self._start() else b""

    async def flush_async(self) -> bytes:
        """:meth:`flush` for an event loop."""
        return await self._collect_async() if self._end() else b""

    async def decoded(self, data: bytes | None) -> AsyncIterator[bytes]:
        """Everything ``data`` completes, part by part as the caller takes it (``None``: the end of the
        stream, everything left); the thread decodes the next part only once the caller asks for it."""
        out = await (self.decode_async(data) if data is not None else self.flush_async())
        while out:
            yield out
            out = await (self.decode_async(b"") if data is not None else self.flush_async())

    def _feed(self, data: bytes) -> None:
        with self._cond:
            if self._eof:
                raise InvalidAudioError("audio after the end of the stream")
            if len(self._input) + len(data) > MAX_PENDING_BYTES:
                raise InvalidAudioError(f"{UNDECODABLE}: too much audio is waiting to be decoded")
            self._input += data
            self._cond.notify_all()

    def _end(self) -> bool:
        """Mark the end of input; whether a thread decodes (False: there was nothing at all)."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        if self._start():
            return True
        if self._input:
            raise InvalidAudioError(f"{UNDECODABLE}: the stream is too short to be audio")
        return False

    def close(self) -> None:
        """Stop the thread and drop what it holds (the connection is gone)."""
        with self._cond:
            self._closed = self._eof = True
            self._input.clear()
            self._output.clear()
            self._cond.notify_all()

    def _start(self) -> bool:
        """Start the thread once the container is known; whether it runs."""
        if self._thread is not None:
            return True
        with self._cond:
            head = bytes(self._input[:HEAD_BYTES])
        if len(head) < HEAD_BYTES:
            return False
        kind = sniff(head)
        if kind == "mp4" and kind not in self._allowed:
            # (a close reason holds 123 bytes: short enough to arrive whole)
            raise InvalidAudioError(f"{UNDECODABLE}: MP4/M4A is not read live; POST the file to /v1/listen")
        if kind is None or kind not in self._allowed:
            supported = ", ".join(sorted(self._allowed))
            raise InvalidAudioError(f"{UNDECODABLE}: not a supported container ({supported})")
        if self._expect.containers is not None and kind not in self._expect.containers:
            raise InvalidAudioError(f"{UNDECODABLE}: the stream is {kind}, not the declared encoding")
        if kind == "wav":
            with self._cond:
                wav = parse_wav(bytes(self._input[:WAV_HEAD_MAX]))
                if wav is None:
                    return False  # the header is still arriving
                if wav.demuxer is not None:  # plain samples: skip the header, read them raw
                    self._wav = wav
                    del self._input[: wav.offset]
        self.container = kind
        self._thread = threading.Thread(target=self._run, args=(kind,), name=f"decode-{kind}", daemon=True)
        self._thread.start()
        return True

    def _collect(self) -> bytes:
        """Wait until the thread is idle (starving, done, or its output full); take the output."""
        with self._cond:
            if not self._cond.wait_for(self._idle, timeout=STALL_S):
                raise InvalidAudioError(f"{UNDECODABLE}: the decoder stalled")
            return self._take()

    async def _collect_async(self) -> bytes:
        loop = asyncio.get_running_loop()
        idle = loop.create_future()
        with self._cond:
            if self._idle():
                return self._take()
            self._waiter = (loop, idle)
        try:
            async with asyncio.timeout(STALL_S):
                await idle
        except TimeoutError as e:
            raise InvalidAudioError(f"{UNDECODABLE}: the decoder stalled") from e
        finally:
            with self._cond:
                self._waiter = None
        with self._cond:
            return self._take()

    def _take(self) -> bytes:
        """The output so far (the lock held); the thread's error once there is no output left."""
        out = bytes(self._output)
        self._output.clear()
        self._cond.notify_all()  # a thread waiting for room goes on
        if self._error is not None and not out:
            raise self._error
        return out

    def _idle(self) -> bool:
        return self._done or len(self._output) >= self._out_bytes() or self._hungry()

    def _wake(self) -> None:
        """The thread's state changed (the lock held): wake the waiters, threads and event loop alike."""
        self._cond.notify_all()
        if self._waiter is not None and self._idle():
            loop, idle = self._waiter
            self._waiter = None
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, idle)

    def _hungry(self) -> bool:
        """The thread has used up every byte given and waits for more (never true after the end)."""
        return self._starving and not self._input and not self._eof

    def _out_bytes(self) -> int:
        return max(1, int(self._out_s * self.sample_rate)) * 2 * max(1, self.channels)

    # ---- the decode thread

    def read(self, size: int = -1) -> bytes:
        """FFmpeg's reads: block until there is input or the input has ended (then b"")."""
        with self._cond:
            while not self._input and not self._eof:
                self._starving = True
                self._wake()
                self._cond.wait()
            self._starving = False
            n = len(self._input) if size < 0 else min(size, len(self._input))
            out = bytes(self._input[:n])
            del self._input[:n]
            return out

    def _emit(self, pcm: bytes) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._closed or len(self._output) < self._out_bytes())
            if not self._closed:
                self._output += pcm
                self._wake()

    def _run(self, kind: str) -> None:
        try:
            wav = self._wav
            if wav is not None:
                if not 1 <= wav.channels <= MAX_CHANNELS:
                    raise InvalidAudioError(
                        f"{UNDECODABLE}: {wav.channels} channels (at most {MAX_CHANNELS})"
                    )
                opened = open_pcm(self, wav, LAYOUTS[wav.channels])
            else:
                opened = open_stream(self, kind, live=True)
            with opened as container:
                self._decode(container)
        except InvalidAudioError as e:
            self._fail(e)
        except (av.FFmpegError, ValueError, OSError, EOFError, MemoryError) as e:
            # one message for every cause: no oracle of FFmpeg's insides
            self._fail(InvalidAudioError(f"{UNDECODABLE} as {kind}{HINTS.get(kind, '')}"), e)
        except Exception as e:  # hostile input reached a PyAV corner: still the client's stream that failed
            log.warning("the %s decoder failed unexpectedly: %s", kind, type(e).__name__)
            self._fail(InvalidAudioError(f"{UNDECODABLE} as {kind}"), e)
        finally:
            with self._cond:
                self._done = True
                self._wake()

    def _fail(self, error: InvalidAudioError, cause: BaseException | None = None) -> None:
        error.__cause__ = cause
        with self._cond:
            self._error = error

    def _decode(self, container: av.container.InputContainer) -> None:
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None or ctx.codec is None:  # a header naming a codec FFmpeg does not have
            raise InvalidAudioError(f"{UNDECODABLE}: an unknown codec")
        self.codec, self.source_rate = ctx.name, ctx.sample_rate
        if self._expect.codec is not None and ctx.name != self._expect.codec:
            raise InvalidAudioError(f"{UNDECODABLE}: the audio is {ctx.name}, not the declared encoding")
        if not MIN_RATE <= ctx.sample_rate <= MAX_RATE:
            raise InvalidAudioError(
                f"{UNDECODABLE}: a sample rate of {ctx.sample_rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz"
            )
        channels = ctx.channels
        if not 1 <= channels <= MAX_CHANNELS:
            raise InvalidAudioError(f"{UNDECODABLE}: {channels} channels (at most {MAX_CHANNELS})")
        if self._want_channels is None:
            with self._cond:
                self.channels = channels
        out_channels = self.channels
        layout = LAYOUTS[out_channels]
        resampler = av.AudioResampler(format="s16", layout=layout, rate=self.sample_rate)
        bad = 0
        for packet in container.demux(stream):
            if self._closed:
                return
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                # one corrupt or cut-off packet (a truncated tail, a flipped bit) is skipped, as a
                # player would; a run of them is not a stream of this codec at all
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise
                continue
            bad = 0
            for frame in frames:
                for out in resampler.resample(frame):
                    self._emit(bytes(out.planes[0])[: out.samples * 2 * out_channels])
        for out in resampler.resample(None):
            self._emit(bytes(out.planes[0])[: out.samples * 2 * out_channels])


def _resolve(idle: asyncio.Future[None]) -> None:
    if not idle.done():
        idle.set_result(None)
