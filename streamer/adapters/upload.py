"""The sessions one HTTP request carries (one per channel): opened at the audio's first piece, fed by
:func:`~streamer.adapters.upload_runner.feed`, their finals collected, released however it ends.

Both upload surfaces (OpenAI's ``/v1/audio/transcriptions``, Deepgram's pre-recorded ``/v1/listen``) run
here after :func:`~streamer.adapters.upload_runner.admitted` let them in; each keeps only its own form
and its answer's shape. Each session is carried by a :class:`_Run`, a
:class:`~streamer.session.run.SessionRun` as a socket's session is (the same attachment, writer, end
steps, detach and quota settlement; nothing resumes it): its outbox hands the session's messages
themselves to the upload, which collects the finals. Server shutdown stops the upload with a retryable
503, a fatal model error with its own error, a client that stops reading a streamed answer as one gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType

from aiohttp import web

from streamer.adapters.common import FrameFeed
from streamer.adapters.upload_runner import Channels, ClientGoneError, Feed, Ticket, feed
from streamer.errors import OverloadedError, StreamerError
from streamer.protocol import (
    CloseCode,
    ServerMessage,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
)
from streamer.session.ending import STOPPED, Ending
from streamer.session.outbox import OUTBOX_MAX_BYTES, Outbox
from streamer.session.registry import SessionRegistry
from streamer.session.run import SessionRun
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

# A streamed upload (one that hears partials) keeps its audio at most this far ahead of the open
# utterance's latest partial (more than the partials' longest interval, 1.5 s at the 15 s utterance
# length), waiting at most FOLLOW_WAIT_S for the next one (a partial can be dropped under load). (At
# 2 s, en_long.wav streamed in 7.4 s against 0.9 s whole on tiny.en, 2 loaded EPYC cores; at 4 s in
# 1.7 s, still 5 deltas for its 2 utterances.)
FOLLOW_LEAD_S = 4.0
FOLLOW_WAIT_S = 2.0

OnFinal = Callable[[TranscriptFinal], Awaitable[None]]
OnPartial = Callable[[TranscriptPartial], Awaitable[None]]
OpenSessions = Callable[[int], Awaitable[list[StreamSession]]]

# an upload's session ends: every final delivered (the feed is over and drained), or the upload stopped
# (refused, failed, client gone) and nothing is left to deliver to it (``STOPPED``)
COMPLETED = Ending("completed", CloseCode.NORMAL)


def client_gone(request: web.Request) -> bool:
    """The client closed its connection (aiohttp, as ``streamer serve`` runs it, does not cancel the
    handler: the upload asks between pieces)."""
    transport = request.transport
    return transport is None or transport.is_closing()


class Upload:
    """One request's sessions: ``async with Upload(...) as upload``, then :meth:`transcribe`.

    ``open_sessions(count)`` opens one session per channel once the audio has said how many it has (the
    first on the ticket's reserved id); it releases what it opened if it fails.
    """

    def __init__(self, registry: SessionRegistry, ticket: Ticket, open_sessions: OpenSessions) -> None:
        self.registry = registry
        self.ticket = ticket
        self.runs: list[_Run] = []
        self.seconds = 0.0
        self.rate = 0  # the audio's sample rate, once transcribing
        self.failed: StreamerError | ClientGoneError | None = None  # the first reason it stopped
        self.fatal = asyncio.Event()
        self._open_sessions = open_sessions
        self._carried: list[asyncio.Task[None]] = []  # each run's life (the registry's tasks)
        self._on_final: OnFinal | None = None
        self._on_partial: OnPartial | None = None

    async def __aenter__(self) -> Upload:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        # every run is asked first: a cancel of this wait leaves none waiting for an end nobody asks for
        for run in self.runs:
            run.ask_end(STOPPED)  # (a no-op for one that ended already)
        if self._carried:
            await asyncio.wait(self._carried)
        # the runs settled it too; this covers audio charged before any session opened
        self.registry.spawn(self.ticket.quota.settle(), f"settle-{self.ticket.session_id}")

    def fail(self, e: StreamerError | ClientGoneError) -> None:
        if self.failed is None:
            self.failed = e
        self.fatal.set()

    async def transcribe(
        self,
        source: AsyncGenerator[Channels, None],
        rate: int,
        request: web.Request,
        on_final: OnFinal | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
        *,
        on_partial: OnPartial | None = None,
    ) -> list[list[TranscriptFinal]]:
        """Feed ``source`` (each channel's PCM16 at ``rate``) through the sessions, paced (stopping if
        ``request``'s client leaves); every utterance
        finalized, each channel's finals in order (``on_final`` hears each as it comes, ``on_partial``
        each partial, which the sessions send only with ``interim_results``). The audio's
        length is in :attr:`seconds`. Raises what stopped it: the feed's refusal, a fatal model error, a
        shutdown, :class:`~streamer.adapters.upload_runner.ClientGoneError`."""
        self._on_final, self._on_partial = on_final, on_partial
        self.rate = rate
        to = Feed(rate, self._push, lambda: client_gone(request), on_start)
        feeding = asyncio.create_task(self._run(source, to))
        fatal = asyncio.create_task(self.fatal.wait())
        try:
            await asyncio.wait({feeding, fatal}, return_when=asyncio.FIRST_COMPLETED)
            if self.failed is not None:
                raise self.failed
            await feeding  # its own error (a quota refusal, an undecodable file) is the answer
            return [run.finals for run in self.runs]
        finally:
            for task in (feeding, fatal):
                task.cancel()
            await asyncio.wait({feeding, fatal})

    async def _run(self, source: AsyncGenerator[Channels, None], to: Feed) -> None:
        self.seconds = await feed(source, self.ticket, to, self.registry.services.settings)
        for run in self.runs:
            await run.flush()
        # every final is queued: each run's end delivers them and releases its session
        for run in self.runs:
            run.ask_end(COMPLETED)
        if self._carried:
            await asyncio.wait(self._carried)

    async def _push(self, channels: Channels) -> None:
        if not self.runs:
            await self._open(len(channels))
        if self.failed is not None:
            raise self.failed
        for run, pcm in zip(self.runs, channels, strict=True):
            await run.push(pcm)

    async def _open(self, count: int) -> None:
        sessions = await self._open_sessions(count)
        self.ticket.held.extend(s.session_id for s in sessions[1:])
        # no await between the sessions' opening and their attachment: each is released on the way out
        self.runs = [_Run(self, session) for session in sessions]
        for run in self.runs:
            run.attach()
            self._carried.append(self.registry.spawn(run.carry(), f"upload-{run.session_id}"))

    async def heard(self, final: TranscriptFinal) -> None:
        if self._on_final is not None:
            await self._on_final(final)

    async def heard_partial(self, partial: TranscriptPartial) -> None:
        if self._on_partial is not None:
            await self._on_partial(partial)


class _Run(SessionRun):
    """One session of an upload, carried as a socket's is; its outbox delivers each message itself to
    :meth:`_collect`, which keeps every final. No reader (the upload feeds its channels together) and
    no slot upkeep of its own (:func:`~streamer.adapters.upload_runner.admitted` keeps the slots)."""

    surface = "upload"
    logger = log

    def __init__(self, upload: Upload, session: StreamSession) -> None:
        s = upload.registry.services.settings
        outbox = Outbox.typed(
            self._collect,
            maxsize=s.session_out_queue,
            max_bytes=OUTBOX_MAX_BYTES,
            send_timeout_s=s.send_timeout_s,
        )
        super().__init__(upload.registry, session, outbox, upload.ticket.quota)
        self.upload = upload
        self.finals: list[TranscriptFinal] = []
        self._feed = FrameFeed(session)
        self._follow = _Follow() if upload._on_partial is not None else None

    async def _collect(self, message: ServerMessage) -> None:
        if self._follow is not None:
            self._follow.heard(message)
        if isinstance(message, TranscriptFinal):
            self.finals.append(message)
            await self.upload.heard(message)
        elif isinstance(message, TranscriptPartial):
            await self.upload.heard_partial(message)

    async def push(self, pcm: bytes) -> None:
        """PCM16 at the session's rate, any length (cut to the frames its input accepts)."""
        await self._feed.push(pcm)
        if self._follow is not None:
            await self._follow.pushed(len(pcm) / 2 / self.upload.rate)

    async def flush(self) -> None:
        """The rest (padded to a frame), and every utterance finalized (queued for the outbox)."""
        await self._feed.flush()
        await self.session.drain()

    # ---- the runner's plugs

    def ask_end(self, ending: Ending) -> None:
        """An end the upload did not ask for (the model failed, shutdown) stops the whole upload."""
        first = self.ending is None
        super().ask_end(ending)
        if first and ending.error is not None:
            self.upload.fail(ending.error)

    def cut(self) -> None:
        """The streamed answer's client stopped reading it: the upload stops as for a client gone."""
        self.upload.fail(ClientGoneError())

    def shutdown_ending(self) -> Ending:
        """A paced upload could outlast the drain, so it stops now with a retryable 503 (the client
        sends the file again to another instance)."""
        error = OverloadedError("the server is shutting down; send the file again", retry_after=5.0)
        return Ending("server_shutdown", CloseCode.GOING_AWAY, error, finalize=False, farewell=False)

    async def hand_over(self) -> None:
        return None  # nothing resumes an upload's session


class _Follow:
    """A streamed upload's pace: the audio waits for its open utterance's partials.

    An upload runs faster than real time, and the session drops an utterance's partial in flight when the
    utterance ends, so fed at its own pace an utterance can be over before any partial of it is decoded
    and its text would come only with its final. Streamed, the audio stays ``FOLLOW_LEAD_S`` ahead of the
    latest partial at most (silence is not held back), so the text arrives as it becomes stable; the
    answer then takes about as long as the partials' decodes, and a whole (non-streamed) answer none.
    """

    def __init__(self) -> None:
        self._open: int | None = None  # the open utterance's segment id
        self._ahead_s = 0.0  # audio pushed since the utterance began or its latest partial came
        self._partial = asyncio.Event()

    def heard(self, message: ServerMessage) -> None:
        """The session sent ``message``. (An utterance's final can come after the next one started: an
        utterance split at its maximum length goes on as the next at once.)"""
        if isinstance(message, SpeechStarted):
            self._open, self._ahead_s = message.segment_id, 0.0
        elif isinstance(message, TranscriptPartial):
            self._ahead_s = 0.0
            self._partial.set()
        elif isinstance(message, SpeechStopped) and message.segment_id == self._open:
            self._open = None
            self._partial.set()

    async def pushed(self, seconds: float) -> None:
        """``seconds`` of audio were pushed: wait, if they are too far ahead of the partials."""
        if self._open is None:
            return
        self._ahead_s += seconds
        if self._ahead_s < FOLLOW_LEAD_S:
            return
        self._partial.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FOLLOW_WAIT_S):
                await self._partial.wait()
        self._ahead_s = 0.0
