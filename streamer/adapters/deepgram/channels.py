"""``multichannel=true``: every channel past the first is a session of its own on the same socket.

The first channel's session is the connection's (``DeepgramConnection``); each further one is carried by a
:class:`ChannelSession`, a :class:`~streamer.session.run.SessionRun` like the connection itself (the same
attachment, writer, end steps, detach), whose outbox's writer renders the channel's results
(``channel_index: [i, n]``) onto the shared socket. It has no reader: the connection feeds it its
channel's audio. Its end is the connection's: once the connection has stopped reading, it asks every
channel to end as it ends (finalized and every result delivered, or not, as its ending says) and waits for
them before its own last message (``Metadata``); a channel says nothing last of its own. The connection's
quota is charged for every channel's audio and is the one each channel's end settles (a quota settles what
it holds once, whoever asks first). A further channel's concurrent-session slot is reserved at admission,
kept alive while the stream runs as the first channel's is, and given back at its release.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from streamer.adapters.common import FrameFeed
from streamer.adapters.deepgram.render import ResultRenderer
from streamer.edge.handshake import hold_slot
from streamer.errors import StreamerError
from streamer.protocol import ServerMessage
from streamer.session.ending import Ending
from streamer.session.outbox import OUTBOX_MAX_BYTES, Outbox, Reply
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.run import SessionRun
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)


class Carrier(Protocol):
    """The connection that carries the first channel and ends the others."""

    def channel_failed(self, e: StreamerError) -> None:
        """The model failed on a further channel: the stream ends with that error."""

    def cut(self) -> None:
        """Drop the socket at once (its client stopped reading)."""

    async def shutdown(self) -> None:
        """Server shutdown: the stream ends; returns once the connection is over."""


class ChannelSession(SessionRun):
    """One further channel's session, fed and ended by the connection that carries the first."""

    surface = "deepgram channel"
    logger = log
    resumable = False  # Deepgram sessions are not resumed

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        renderer: ResultRenderer,
        quota: AudioQuota,
        carrier: Carrier,
    ) -> None:
        s = registry.services.settings
        outbox = Outbox(
            self._send,
            render=renderer.render,  # frames made by the writer, in order (no JSON round trip)
            maxsize=s.session_out_queue,
            max_bytes=OUTBOX_MAX_BYTES,
            send_timeout_s=s.send_timeout_s,
        )
        super().__init__(registry, session, outbox, quota)
        self.renderer = renderer
        self._ws = ws
        self._carrier = carrier
        self._feed = FrameFeed(session)
        self._failed: StreamerError | None = None  # the model failed while finalizing: the carrier says it
        self.carried: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Attach the session and carry it (in a task the registry owns) until the connection ends it."""
        self.attach()
        self.carried = self.registry.spawn(self.carry(), f"channel-{self.session_id}")

    async def _send(self, frame: str) -> None:
        if self._ws.closed:
            return
        with contextlib.suppress(ConnectionError):
            await self._ws.send_str(frame)

    # ---- fed by the connection

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

    async def ended(self) -> StreamerError | None:
        """Once this channel is detached: the model's failure while finalizing it, if any."""
        if self.carried is not None:
            await self._finished.wait()
        return self._failed

    # ---- the runner's plugs

    async def drain(self, ending: Ending) -> None:
        if not ending.finalize:
            return
        await self._feed.flush()  # a sample split at the end, padded
        try:
            await super().drain(ending)
        except StreamerError as e:
            # this channel's results end here; the connection says why the stream ends (and counts it)
            self._failed = e

    def slot_upkeep(self) -> Callable[[float], Awaitable[None]]:
        """Each channel's session holds a slot of the key's: an unrefreshed one expires, and the key could
        then open more sessions than its limit while this stream still runs."""
        return functools.partial(hold_slot, self.services, self.session.key_id, self.session_id)

    def last_messages(self, ending: Ending) -> list[ServerMessage]:
        return []  # the connection's Metadata is the stream's last message, after every channel's results

    def _on_fatal(self, e: StreamerError) -> None:
        """The model failed on this channel: the stream cannot go on. The connection ends with the error
        and, as it ends, ends this channel too (what it had queued is delivered first)."""
        self._carrier.channel_failed(e)

    def cut(self) -> None:
        """The client stopped reading the socket this channel shares: the connection is cut."""
        self._carrier.cut()

    # ---- the registry's Attachment

    async def hand_over(self) -> None:
        return None  # Deepgram sessions are not resumed

    async def shutdown(self) -> None:
        """Server shutdown ends the stream, not a channel alone: the connection ends every channel's
        results, then its ``Metadata``, then closes (1001)."""
        await self._carrier.shutdown()
        await self.ended()
