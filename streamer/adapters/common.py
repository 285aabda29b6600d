"""What every vendor surface shares: credentials, the connection that carries a session, audio re-framing.

An adapter is a translator, not a second pipeline. Its connection admits a :class:`StreamSession` through
the :class:`SessionRegistry` (rate, capacity, the key's concurrent-session quota), attaches it with an
:class:`Outbox` whose writer renders each protocol v1 message in the vendor's shape, and feeds it audio
under the same guards as ``/v1/stream`` (the connection is a :class:`SessionSocket`, like its): frame size,
real-time pacing, the message rate, the text size, the key's daily audio quota, the idle timeout and the
session length. Vendor client events become session calls (``commit``, ``drain``, ``update_config``). The
upgrade itself is checked like ``/v1/stream``'s (``streamer.edge.upgrade.socket_response``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from abc import abstractmethod
from collections.abc import Callable, Sequence

from aiohttp import web

from streamer.edge.handshake import redeem_token
from streamer.edge.socket import SessionSocket
from streamer.errors import (
    AuthError,
    BadRequestError,
    FrameTooLargeError,
    RateLimitedError,
    StreamerError,
    UnsupportedLanguageError,
)
from streamer.guards.keys import KeyRecord
from streamer.pipeline.segmenter import SegmenterConfig
from streamer.protocol import CloseCode, ServerMessage, SessionConfig, TranscriptFinal, TranslationFinal
from streamer.services import Services
from streamer.session.outbox import Reply
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)

NO_ENDPOINT_MS = 3_600_000  # "never end an utterance on silence": only commits (and max length) end it
# the longest span an ungated (manual) turn holds before it is split: 10 min of audio is 38 MB of samples
MAX_COMMITTED_SPAN_S = 600.0


async def key_record(services: Services, presented: str) -> KeyRecord:
    """The record of an API key presented in a vendor's header; 401 when it is not one."""
    key = await services.state.authenticate(presented)
    if key is None:
        raise AuthError("unknown API key")
    return key


async def key_by_id(services: Services, key_id: str) -> KeyRecord:
    """The record behind a temporary credential: the key must still exist and not be revoked."""
    for record in services.keys.records:
        if record.key_id == key_id:
            return record
    stored = await services.backend.get_key(key_id)
    if stored is None or stored.revoked:
        raise AuthError("the key this credential was made for is no longer valid")
    return stored


async def redeem(services: Services, token: str, audience: str) -> tuple[KeyRecord, dict[str, object]]:
    """Spend a temporary credential minted for ``audience`` (its surface; single use, TTL): its key and
    what it carried."""
    grant = await redeem_token(services, token, audience)
    return await key_by_id(services, grant.key_id), dict(grant.extra)


def issue(
    services: Services, key: KeyRecord, ttl_s: float, extra: dict[str, object], audience: str
) -> tuple[str, float]:
    """A temporary credential for ``key``, for the surface ``audience`` names: (token, expires at)."""
    token, grant = services.tokens.issue(
        "", key.key_id, SessionConfig(), audience=audience, ttl_s=ttl_s, extra=extra
    )
    return token, grant.expires_at


def check_language(services: Services, language: str | None) -> str | None:
    """A language the ASR model knows (primary subtag: ``en-US`` is ``en``), or None to detect."""
    if language is None:
        return None
    code = language.split("-")[0].split("_")[0].lower()
    if code not in services.asr.languages():
        raise UnsupportedLanguageError(
            f"language {language!r} is not supported by the model {services.asr.name}"
        )
    return code


@dataclasses.dataclass(frozen=True)
class Turns:
    """How a surface wants utterances cut: by silence (``end_silence_ms``), or only on commit (None)."""

    end_silence_ms: int | None = None
    start_threshold: float | None = None
    pre_roll_ms: int | None = None
    # False: the client's commits are the turns: the span between two is one utterance with all of its
    # audio, not cut to the speech the VAD heard nor split at max_utterance_s (OpenAI, turn_detection null)
    gated: bool = True

    def apply(self, base: SegmenterConfig) -> SegmenterConfig:
        cfg = base
        if self.start_threshold is not None:
            # keep the hysteresis: the end threshold stays below the start one
            end = min(cfg.end_threshold, self.start_threshold * 0.7)
            cfg = dataclasses.replace(cfg, start_threshold=self.start_threshold, end_threshold=end)
        if self.pre_roll_ms is not None:
            cfg = dataclasses.replace(cfg, pre_roll_ms=self.pre_roll_ms)
        if not self.gated:
            cfg = dataclasses.replace(cfg, gated=False, max_utterance_s=MAX_COMMITTED_SPAN_S)
        silence = NO_ENDPOINT_MS if self.end_silence_ms is None else self.end_silence_ms
        # a pause (for speculative decoding) must stay shorter than the silence that ends an utterance
        return dataclasses.replace(
            cfg, end_silence_ms=silence, pause_ms=min(cfg.pause_ms, max(32, silence // 2))
        )


def retune(session: StreamSession, turns: Turns) -> None:
    """Apply ``turns`` to the session's turn detection. Only between utterances (``ConfigError``): the
    audio clock and the segment numbering carry over, nothing that was spoken is lost."""
    session.retune(turns.apply(session.services.segmenter_config))


class Reframer:
    """Vendor clients send audio in messages of any length: cut each into frames of whole samples no
    longer than the session's largest frame. Nothing is held back but a sample split between two messages,
    which waits for its other bytes."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def frames(self, data: bytes, sample_bytes: int, max_bytes: int) -> list[bytes]:
        """The frames ``data`` completes (``max_bytes``: a whole number of samples)."""
        self._pending += data
        whole = len(self._pending) - len(self._pending) % sample_bytes
        out = [bytes(self._pending[i : min(i + max_bytes, whole)]) for i in range(0, whole, max_bytes)]
        del self._pending[:whole]
        return out

    def clear(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)


class FrameFeed:
    """PCM16 of any length into one session, cut by a :class:`Reframer` into the frames its input
    accepts: how a connection feeds a further channel's session, and an upload each of its sessions."""

    def __init__(self, session: StreamSession) -> None:
        self.session = session
        self._reframer = Reframer()

    async def push(self, pcm: bytes) -> None:
        pcm_input = self.session.pcm
        for frame in self._reframer.frames(pcm, pcm_input.sample_bytes, pcm_input.max_frame_bytes):
            await self.session.push_audio(frame)

    async def flush(self) -> None:
        """A sample split at the end, padded to a whole one (a commit or the end must not lose it)."""
        if held := len(self._reframer):
            await self.push(b"\0" * (self.session.pcm.sample_bytes - held))


class AdapterConnection(SessionSocket):
    """One vendor WebSocket and the session it carries: the reader, the writer and the guards are
    :class:`SessionSocket`'s; a surface renders protocol v1 messages and reads its client's events."""

    surface = "adapter"
    resumable = False  # vendor APIs have no resume: a dropped connection ends its session

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        transport: asyncio.Transport | None = None,
    ) -> None:
        super().__init__(registry, ws, session, transport, render=self.render)
        self.reframer = Reframer()
        # audio pushed since the last commit, the client's (reset by the surface) or the VAD's
        self.uncommitted_ms = 0.0
        self._open_seen: int | None = None  # the segment open after the last push

    # ---- what a surface provides

    @abstractmethod
    def render(self, message: ServerMessage) -> list[str]:
        """The vendor's frames for one protocol v1 message (maybe none)."""

    async def opening(self, replay: Sequence[TranscriptFinal | TranslationFinal], resumed: bool) -> None:
        """Frames the vendor sends first (never resumed, so nothing to replay): none by default."""
        return None

    def close_message(self, reason: str, error: StreamerError | None) -> str:
        """The close frame's reason: the error's message, or why the session ended."""
        return error.message if error is not None else reason

    # ---- the connection

    async def reply(self, *frames: Callable[[], str | list[str] | None]) -> None:
        """Answer a client event: its frames go out through the outbox, in order with the results queued
        before them, under the same bounds (bytes, send timeout); each is made when its turn comes, so the
        surface's rendering state changes in the writer alone (None: nothing to send after all)."""
        await self.outbox.put(Reply(frames))

    async def on_binary(self, data: bytes) -> None:
        raise BadRequestError("this API takes no binary messages")

    def max_audio_bytes(self) -> int:
        """The most audio one client message may carry (cut into frames inside): one frame by default."""
        return self.session.pcm.max_frame_bytes

    async def push_audio(self, data: bytes) -> None:
        """One message's audio (the session's encoding and rate), of any size up to
        :meth:`max_audio_bytes`: the same limits as ``/v1/stream``, counted in audio seconds."""
        pcm = self.session.pcm
        if len(data) > (limit := self.max_audio_bytes()):
            raise FrameTooLargeError(
                f"an audio message of {len(data)} bytes exceeds the limit of {limit} bytes "
                f"({limit / pcm.sample_bytes / pcm.sample_rate:g} s)"
            )
        seconds = pcm.seconds(data)
        if not self.pacer.admit(seconds):
            raise RateLimitedError(
                f"audio is arriving faster than {self.services.settings.max_realtime_factor:g}x real time",
                code="audio_rate_exceeded",
            )
        await self.quota.charge(seconds)
        for frame in self.reframer.frames(data, pcm.sample_bytes, pcm.max_frame_bytes):
            await self.session.push_audio(frame)
            if not self._vad_committed():
                self.uncommitted_ms += pcm.seconds(frame) * 1000

    def _vad_committed(self) -> bool:
        """Whether the segment open after the last push has ended since (in a push, or when a decode's
        verdict released its pause): the VAD committed the buffer, and at most one frame was left."""
        now = self.session.open_segment_id
        ended = self._open_seen is not None and now != self._open_seen
        self._open_seen = now
        if ended:
            self.uncommitted_ms = 0.0
        return ended

    def emptied(self) -> None:
        """The client committed or cleared the buffer (after the session ended its segment, if any)."""
        self.uncommitted_ms = 0.0
        self._open_seen = self.session.open_segment_id

    def buffered_ms(self) -> float:
        """The audio not yet committed (by the client or the VAD)."""
        self._vad_committed()
        return self.uncommitted_ms

    async def flush_audio(self) -> None:
        """A sample left incomplete by the client's last message: completed with zero bytes (a commit must
        not lose it)."""
        pcm = self.session.pcm
        held = len(self.reframer)
        if held == 0:
            return
        for frame in self.reframer.frames(
            b"\0" * (pcm.sample_bytes - held), pcm.sample_bytes, pcm.max_frame_bytes
        ):
            await self.session.push_audio(frame)

    async def end(self, reason: str = "client_closed") -> None:
        """The client is done: finalize, deliver every final, say goodbye, close normally."""
        await self.flush_audio()
        self.finish(reason, CloseCode.NORMAL)  # the connection's end drains, delivers and closes
