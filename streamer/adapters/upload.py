"""The sessions one HTTP request carries (one per channel): opened at the audio's first piece, fed by
:func:`~streamer.adapters.upload_runner.feed`, their finals collected, released however it ends.

Both upload surfaces (OpenAI's ``/v1/audio/transcriptions``, Deepgram's pre-recorded ``/v1/listen``) run
here after :func:`~streamer.adapters.upload_runner.admitted` let them in; each keeps only its own form
and its answer's shape. The registry attaches every session to a :class:`_Run` (nothing resumes it);
server shutdown stops the upload with a retryable 503, a fatal model error with its own error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType

from aiohttp import web

from streamer.adapters.common import FrameFeed
from streamer.adapters.upload_runner import Channels, Feed, Ticket, feed
from streamer.errors import OverloadedError, StreamerError
from streamer.protocol import TranscriptFinal
from streamer.session.outbox import Outbox
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

OnFinal = Callable[[TranscriptFinal], Awaitable[None]]
OpenSessions = Callable[[int], Awaitable[list[StreamSession]]]


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
        self.failed: StreamerError | None = None
        self.fatal = asyncio.Event()
        self._open_sessions = open_sessions
        self._on_final: OnFinal | None = None

    async def __aenter__(self) -> Upload:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        for run in self.runs:
            await run.close()
        self.registry.spawn(self.ticket.quota.settle(), f"settle-{self.ticket.session_id}")

    def fail(self, e: StreamerError) -> None:
        self.failed = e
        self.fatal.set()

    async def transcribe(
        self,
        source: AsyncGenerator[Channels, None],
        rate: int,
        request: web.Request,
        on_final: OnFinal | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> list[list[TranscriptFinal]]:
        """Feed ``source`` (each channel's PCM16 at ``rate``) through the sessions, paced (stopping if
        ``request``'s client leaves); every utterance
        finalized, each channel's finals in order (``on_final`` hears each as it comes). The audio's
        length is in :attr:`seconds`. Raises what stopped it: the feed's refusal, a fatal model error, a
        shutdown, :class:`~streamer.adapters.upload_runner.ClientGoneError`."""
        self._on_final = on_final
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
            await run.finish()

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

    async def heard(self, final: TranscriptFinal) -> None:
        if self._on_final is not None:
            await self._on_final(final)


class _Run:
    """One session of an upload: the registry's attachment, its outbox keeping every final."""

    def __init__(self, upload: Upload, session: StreamSession) -> None:
        self.upload = upload
        self.registry = upload.registry
        self.session = session
        self.finals: list[TranscriptFinal] = []
        self._feed = FrameFeed(session)
        self._outbox = Outbox(self._collect, maxsize=self.registry.services.settings.session_out_queue)
        self._writer: asyncio.Task[None] | None = None

    def attach(self) -> None:
        self.registry.attach(self.session, self, self._outbox)
        self.session.on_fatal = self.upload.fail
        self._writer = asyncio.create_task(self._outbox.run(), name=f"upload-{self.session.session_id}")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.wait({self._writer})
        self._outbox.abandon()
        await asyncio.shield(self.registry.detach(self.session, self, ended=True))  # see SessionSocket.run

    async def _collect(self, text: str) -> None:
        message = json.loads(text)
        if message.get("type") == "transcript.final":
            final = TranscriptFinal.model_validate(message)
            self.finals.append(final)
            await self.upload.heard(final)

    async def push(self, pcm: bytes) -> None:
        """PCM16 at the session's rate, any length (cut to the frames its input accepts)."""
        await self._feed.push(pcm)

    async def finish(self) -> None:
        """The rest (padded to a frame), every utterance finalized, every final collected."""
        await self._feed.flush()
        await self.session.drain()
        await self._outbox.finish()
        if self._writer is not None:
            await asyncio.wait({self._writer})

    # ---- the registry's Attachment

    async def hand_over(self) -> None:
        return None  # nothing resumes an upload's session

    async def shutdown(self) -> None:
        """Server shutdown: a paced upload could outlast the drain, so it stops now with a retryable 503
        (the client sends the file again to another instance)."""
        self.upload.fail(OverloadedError("the server is shutting down; send the file again", retry_after=5.0))
