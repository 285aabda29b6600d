"""A session carried by one HTTP request: audio pushed in as the body arrives, finals collected.

The registry attaches the session to an :class:`UploadRun` (nothing resumes it; the server's shutdown
timeout bounds the request) with an outbox that keeps every ``transcript.final``. The request pushes the
decoded PCM in any sizes (re-framed to what the session's input accepts), then :meth:`finish` finalizes
and returns the finals. A fatal model error fails the next push or the finish. Leaving the ``async with``
releases the session, whatever happened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from types import TracebackType

from streamer.adapters.common import Reframer
from streamer.errors import StreamerError
from streamer.protocol import TranscriptFinal
from streamer.session.outbox import Outbox
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

OnFinal = Callable[[TranscriptFinal], Awaitable[None]]


class UploadRun:
    """One request's session: ``async with UploadRun(...) as run``, then ``push`` and ``finish``."""

    def __init__(
        self, registry: SessionRegistry, session: StreamSession, on_final: OnFinal | None = None
    ) -> None:
        self.registry = registry
        self.session = session
        self.finals: list[TranscriptFinal] = []
        self.failed: StreamerError | None = None
        self.fatal = asyncio.Event()
        self._on_final = on_final
        self._reframer = Reframer()
        self._outbox = Outbox(self._collect, maxsize=registry.services.settings.session_out_queue)
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UploadRun:
        self.registry.attach(self.session, self, self._outbox)
        self.session.on_fatal = self._fail
        self._writer = asyncio.create_task(self._outbox.run(), name=f"upload-{self.session.session_id}")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
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
            if self._on_final is not None:
                await self._on_final(final)

    def _fail(self, e: StreamerError) -> None:
        self.failed = e
        self.fatal.set()

    async def push(self, pcm: bytes) -> None:
        """PCM16 at the session's rate, any length."""
        if self.failed is not None:
            raise self.failed
        pcm_input = self.session.pcm
        for frame in self._reframer.frames(pcm, pcm_input.min_frame_bytes, pcm_input.max_frame_bytes):
            await self.session.push_audio(frame)

    async def finish(self) -> list[TranscriptFinal]:
        """The rest (padded to a frame), every utterance finalized; the finals in order."""
        held = len(self._reframer)
        if held:
            await self.push(b"\0" * max(self.session.pcm.min_frame_bytes - held, held % 2))
        draining = asyncio.ensure_future(self._drain())
        fatal = asyncio.ensure_future(self.fatal.wait())
        try:
            await asyncio.wait({draining, fatal}, return_when=asyncio.FIRST_COMPLETED)
            if self.failed is not None:
                raise self.failed
            await draining
            return self.finals
        finally:
            for task in (draining, fatal):
                task.cancel()
            await asyncio.wait({draining, fatal})

    async def _drain(self) -> None:
        await self.session.drain()
        await self._outbox.finish()
        if self._writer is not None:
            await asyncio.wait({self._writer})

    # ---- the registry's Attachment

    async def hand_over(self) -> None:
        return None  # nothing resumes an upload's session

    async def shutdown(self) -> None:
        return None  # the request finishes its own audio (the server's shutdown timeout bounds it)
