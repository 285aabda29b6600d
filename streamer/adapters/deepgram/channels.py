"""``multichannel=true``: every channel past the first is a session of its own on the same socket.

The first channel's session is the connection's (``DeepgramConnection``); each further one is a
:class:`ChannelSession`, the registry's attachment for it, with its own outbox whose writer renders the
channel's results (``channel_index: [i, n]``) onto the shared socket. The connection feeds each its
channel's audio, finalizes them together and ends them before its own last message (``Metadata``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable

from aiohttp import web

from streamer.adapters.common import FrameFeed
from streamer.adapters.deepgram.render import ResultRenderer
from streamer.errors import StreamerError
from streamer.session.outbox import OUTBOX_MAX_BYTES, Outbox, Reply
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession


class ChannelSession:
    """One further channel's session, fed and ended by the connection that carries the first."""

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        renderer: ResultRenderer,
        on_fatal: Callable[[StreamerError], None],
    ) -> None:
        s = registry.services.settings
        self.registry = registry
        self.session = session
        self.renderer = renderer
        self._ws = ws
        self._on_fatal = on_fatal
        self.outbox = Outbox(
            self._send,
            render=renderer.render,  # frames made by the writer, in order (no JSON round trip)
            maxsize=s.session_out_queue,
            max_bytes=OUTBOX_MAX_BYTES,
            send_timeout_s=s.send_timeout_s,
        )
        self._feed = FrameFeed(session)
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.registry.attach(self.session, self, self.outbox)
        self.session.on_fatal = self._on_fatal
        self._writer = asyncio.create_task(self.outbox.run(), name=f"writer-{self.session.session_id}")

    async def _send(self, frame: str) -> None:
        if self._ws.closed:
            return
        with contextlib.suppress(ConnectionError):
            await self._ws.send_str(frame)

    async def push(self, pcm: bytes) -> None:
        await self._feed.push(pcm)

    async def finalize(self) -> None:
        await self._feed.flush()
        open_id = self.session.open_segment_id
        await self.session.commit("finalize")
        await self.outbox.put(Reply((functools.partial(self.renderer.finalize, open_id),)))

    async def gap(self) -> None:
        """``UtteranceEnd`` if the audio has gone on past the gap after the last word."""
        if check := self.renderer.gap_check(self.session.audio_ms):
            await self.outbox.put(Reply((check,)))

    async def finish(self, timeout_s: float) -> None:
        """Finalize, then deliver every result (bounded) before the connection's ``Metadata``."""
        await self._feed.flush()
        await self.session.drain()
        await self.outbox.finish()
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=timeout_s)

    async def stop(self) -> None:
        """The connection is over: stop writing and release the session."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.wait({self._writer})
        self.outbox.abandon()
        await asyncio.shield(self.registry.detach(self.session, self, ended=True))

    # ---- the registry's Attachment

    async def hand_over(self) -> None:
        return None  # Deepgram sessions are not resumed

    async def shutdown(self) -> None:
        with contextlib.suppress(StreamerError):
            await self.session.drain()
