"""Durable sessions: a session's state written through to the shared backend, so any instance resumes it.

With ``STREAMER_REDIS_URL`` set, what a session needs to go on elsewhere lives in Redis as it changes: its
config and key, the audio clock up to which everything was transcribed, the seq counter, the next segment
id, and its latest finals and translations (the last :data:`HISTORY_KEEP`, for the replay). Writes are
cheap: one small script call per final (and per translation), awaited *before* the client is sent it, so
a final a client has seen is never lost with its instance; nothing is written per audio frame.

Ownership: the instance serving a session is its ``owner`` in Redis and only the owner may write it. Every
instance beats a heartbeat key every :data:`HEARTBEAT_EVERY_S`; a resume *claims* the session, which
succeeds when it is parked, or when its owner's heartbeat has lapsed (the owner died without parking
anything, e.g. SIGKILL). So a session is never served by two instances at once, and a crashed instance's
sessions are free within :data:`HEARTBEAT_TTL_S`.

Audio that had not become a final when an instance died is re-sent by the client (it keeps a buffer of
the audio after its last final): the resumed socket says where that audio starts (``audio_from_ms``) and
:class:`ResentAudio` skips what the session already transcribed, so every sentence is transcribed once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from streamer.errors import SessionNotFoundError, StreamerError
from streamer.guards.load import LoadMeter
from streamer.guards.ratelimit import AudioPacer
from streamer.pipeline.speakers import SpeakerState
from streamer.protocol import CloseCode, SessionConfig, TranscriptFinal, TranslationFinal, dump
from streamer.services import Services
from streamer.session.runtime import StreamSession
from streamer.state.backend import BackendUnavailableError, SessionRecord

log = logging.getLogger(__name__)

HISTORY_KEEP = 64  # finals and translations kept for a replay (a client that lags further loses them)
HEARTBEAT_EVERY_S = 1.0
HEARTBEAT_TTL_S = 3.0  # a SIGKILLed instance's sessions can be claimed this long after its last beat
CLAIM_WAIT_S = HEARTBEAT_TTL_S + 2.0  # a resume waits this long for the owner to park or to be seen dead
CLAIM_POLL_S = 0.2
TOUCH_EVERY_S = 20.0  # a live session's record is kept alive this often (and outlives it by the window)
LIVE_MARGIN_S = 2 * TOUCH_EVERY_S
MAX_RESEND_S = 30.0  # the most re-sent audio a resume exempts from the real-time pacing (ResentAudio)

ResultMessage = TranscriptFinal | TranslationFinal
_MESSAGE: TypeAdapter[ResultMessage] = TypeAdapter(ResultMessage)


class SessionBusyError(StreamerError):
    """Another live instance still holds the session (its connection has not dropped there yet)."""

    code = "session_busy"
    status = 409
    close_code = CloseCode.TRY_AGAIN_LATER
    retryable = True


class DurableState(BaseModel):
    """What another instance needs to carry on a session (stored as JSON; the history is kept apart)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str
    config: SessionConfig
    seq: int = Field(ge=0)
    transcribed_until_ms: int = Field(ge=0)  # every sample before this is in a final (or was not speech)
    next_segment_id: int = Field(ge=1)
    started_at: float  # wall clock (epoch seconds): the session-length limit holds across instances
    # audio received as of the last write: how far a resume elsewhere may move the clock (ResentAudio)
    received_ms: int = Field(default=0, ge=0)
    # the real-time pacer's audio seconds left at the last write, and when (epoch seconds): kept_pacer()
    pacer_s: float | None = None
    pacer_at: float = 0.0
    speakers: SpeakerState = Field(default_factory=list)  # diarize: so speaker 0 stays speaker 0


class Journal:
    """One session's write-through. Writes are serialized, so the stored state only moves forward."""

    def __init__(self, durable: DurableSessions, session: StreamSession, state: DurableState) -> None:
        self._durable = durable
        self.session = session
        self.state = state
        self._lock = asyncio.Lock()
        self.lost = False  # another instance took the session over: this one must not write any more
        self._log = logging.LoggerAdapter(log, {"session_id": session.session_id})

    async def record(self, message: ResultMessage) -> None:
        """A final (or translation) is about to be sent: store it first."""
        if isinstance(message, TranscriptFinal):
            self.state = self.state.model_copy(
                update={
                    "seq": message.seq,
                    "transcribed_until_ms": max(self.state.transcribed_until_ms, message.audio_end_ms),
                    "next_segment_id": message.segment_id + 1,
                }
            )
        await self._save([dump(message)], self._durable.live_ttl_s)

    async def touch(self) -> None:
        """Keep the record alive while the session is (no final for a while is normal)."""
        await self._save([], self._durable.live_ttl_s)

    async def park(self, window_s: float, *, finalized: bool = True) -> None:
        """Leave the session to any instance for ``window_s``. ``finalized``: every final of its audio was
        written, so the audio clock is the transcribed-up-to point (else the last final's end stays it)."""
        if finalized:
            self.state = self.state.model_copy(update={"transcribed_until_ms": self.session.audio_ms})
        await self._save([], window_s, release=True)

    async def _save(self, append: Sequence[str], ttl_s: float, *, release: bool = False) -> None:
        async with self._lock:
            if self.lost:
                return
            received = max(self.state.received_ms, self.session.audio_ms)
            update: dict[str, object] = {"config": self.session.config, "received_ms": received}
            update["speakers"] = self.session.speakers.state()
            if self.session.pacer is not None:
                update.update(pacer_s=self.session.pacer.available_s, pacer_at=time.time())
            self.state = self.state.model_copy(update=update)
            services, state = self._durable.services, self.state.model_dump_json()
            try:
                # through the state breaker: while Redis is known to be down, a final is not held up
                ok = await services.state.call(
                    lambda: services.backend.save_session_state(
                        self.session.session_id,
                        self._durable.instance_id,
                        state,
                        append,
                        HISTORY_KEEP,
                        ttl_s,
                        release=release,
                    ),
                    None,
                )
            except StreamerError as e:  # fail_closed: the policy refuses; the session goes on all the same
                ok, reason = None, e.message
            else:
                reason = "shared state unreachable"
            if ok is None:
                # only a resume elsewhere after a crash would miss this write
                self._log.warning("the session's durable state was not written: %s", reason)
                return
            if not ok:
                self.lost = True
                self._log.warning("the session was taken over by another instance; no longer writing it")


class DurableSessions:
    """This instance's side of durable sessions: its heartbeat, its sessions' journals, claims, restores."""

    def __init__(self, services: Services, instance_id: str | None = None) -> None:
        self.services = services
        self.instance_id = instance_id or uuid.uuid4().hex
        self._journals: dict[str, Journal] = {}
        self._last_touch = time.monotonic()
        self._stopped = False

    @property
    def live_ttl_s(self) -> float:
        """A live session's record outlives its last write by this (so it outlives a crash by the window)."""
        return self.services.settings.resume_window_s + LIVE_MARGIN_S

    async def beat(self) -> None:
        """One heartbeat (and, every :data:`TOUCH_EVERY_S`, a touch of every live session's record)."""
        try:
            await self.services.backend.beat(self.instance_id, HEARTBEAT_TTL_S)
        except BackendUnavailableError as e:
            log.warning("heartbeat not written: %s", e)
        if time.monotonic() - self._last_touch >= TOUCH_EVERY_S:
            self._last_touch = time.monotonic()
            for journal in list(self._journals.values()):
                await journal.touch()

    async def run(self) -> None:
        """Beat until :meth:`stop` (a task the registry owns, which it also cancels).

        The flag, not the cancel alone, ends the loop: a cancel that lands inside a client library's call
        can come out as that library's connection error, which :meth:`beat` logs and survives; a shutdown
        in CI once waited two minutes on a heartbeat that beat on against a stopped Redis.
        """
        while not self._stopped:
            await self.beat()
            if not self._stopped:
                await asyncio.sleep(HEARTBEAT_EVERY_S)

    def stop(self) -> None:
        """End :meth:`run` after the beat in progress, if any."""
        self._stopped = True

    # ---- sessions of this instance

    def journal(self, session: StreamSession, state: DurableState | None = None) -> Journal:
        """Start writing ``session`` through (a new one, or one just claimed with its ``state``)."""
        if state is None:
            wall_start = time.time() - (time.monotonic() - session.started_at)
            state = DurableState(
                key_id=session.key_id,
                config=session.config,
                seq=session.seq,
                transcribed_until_ms=session.audio_ms,
                next_segment_id=1,
                started_at=wall_start,
            )
        journal = self._journals[session.session_id] = Journal(self, session, state)
        session.on_result = journal.record
        return journal

    def received_ms(self, session: StreamSession) -> int:
        """The audio ``session`` had received as last written (its clock if it has no journal here)."""
        journal = self._journals.get(session.session_id)
        return max(session.audio_ms, journal.state.received_ms if journal is not None else 0)

    def pacer_left_s(self, session: StreamSession) -> float | None:
        """The pacer's audio seconds left as last written for ``session`` (refilled since), if any."""
        journal = self._journals.get(session.session_id)
        if journal is None or journal.state.pacer_s is None:
            return None
        rate = self.services.settings.max_realtime_factor
        return journal.state.pacer_s + max(0.0, time.time() - journal.state.pacer_at) * rate

    def forget(self, session: StreamSession) -> Journal | None:
        """Stop writing ``session`` (parked or ended); its journal, if it had one."""
        session.on_result = None
        return self._journals.pop(session.session_id, None)

    async def drop(self, session: StreamSession) -> None:
        """The session ended for good: no instance may resume it."""
        self.forget(session)
        try:
            await self.services.backend.drop_session_state(session.session_id, self.instance_id)
        except BackendUnavailableError as e:
            log.warning("could not drop the session's state (%s); it expires on its own", e)

    # ---- resume on any instance

    async def load(self, session_id: str, key_id: str) -> DurableState | None:
        """The session's stored state if ``key_id`` owns it (for the REST resume), else None."""
        record = await self.services.backend.load_session_state(session_id)
        state = _state_of(record)
        return state if state is not None and state.key_id == key_id else None

    async def claim(
        self, session_id: str, key_id: str, clock: Callable[[], float] = time.monotonic
    ) -> tuple[DurableState, list[ResultMessage]]:
        """Take the session over for this instance, waiting up to :data:`CLAIM_WAIT_S` for an owner that
        is parking it or has died. Raises ``session_not_found`` or ``session_busy``."""
        backend = self.services.backend
        deadline = clock() + CLAIM_WAIT_S
        while True:
            try:
                # checked before claiming, so a resume with another key's session cannot take it
                record = await backend.load_session_state(session_id)
                state = _state_of(record)
                if state is None or state.key_id != key_id:
                    raise SessionNotFoundError("this session can no longer be resumed")
                claim = await backend.claim_session_state(session_id, self.instance_id, self.live_ttl_s)
            except BackendUnavailableError as e:
                raise SessionBusyError("sessions cannot be resumed while shared state is unreachable") from e
            if claim.outcome == "missing":
                raise SessionNotFoundError("this session can no longer be resumed")
            if claim.outcome == "claimed" and claim.record is not None:
                claimed = _state_of(claim.record)
                if claimed is not None:
                    return claimed, _messages_of(claim.record)
            if clock() >= deadline:
                raise SessionBusyError(
                    "the session is still held by another instance; retry shortly", retry_after=2.0
                )
            await asyncio.sleep(CLAIM_POLL_S)

    def restore(
        self, session_id: str, state: DurableState, history: list[ResultMessage], load: LoadMeter
    ) -> StreamSession:
        """A session carrying on from its stored state: same seq, clock, segment ids and session limit."""
        session = StreamSession(session_id, state.key_id, state.config, self.services, load=load)
        session.restore(
            state.seq,
            history,
            state.transcribed_until_ms,
            state.next_segment_id,
            time.time() - state.started_at,
        )
        session.speakers.restore(state.speakers)
        self.journal(session, state)
        return session


def _state_of(record: SessionRecord | None) -> DurableState | None:
    if record is None:
        return None
    try:
        return DurableState.model_validate_json(record.state)
    except ValueError:
        log.warning("unreadable durable session state; treating the session as gone")
        return None


def _messages_of(record: SessionRecord) -> list[ResultMessage]:
    messages: list[ResultMessage] = []
    for raw in record.messages:
        try:
            messages.append(_MESSAGE.validate_json(raw))
        except ValueError:
            log.warning("skipping an unreadable stored message")
    return messages


def kept_pacer(session: StreamSession, fresh: AudioPacer, left_s: float | None = None) -> AudioPacer:
    """The real-time pacer for a session's new connection: the one its last connection used (refilled
    by the time since), so a drop and a resume do not refill the burst. ``left_s``: the seconds a
    session restored from shared state had left (its pacer object stayed with the old instance).
    """
    if session.pacer is None:
        if left_s is not None:
            fresh.admit(max(0.0, fresh.available_s - left_s))  # drain the fresh burst to what was left
        session.pacer = fresh
    return session.pacer


class ResentAudio:
    """Audio a resuming client sends again from ``audio_from_ms``: the part its session already
    transcribed is skipped, and only the audio the drop cut off is exempt from real-time pacing.

    The exemption is the audio between the session's last final and the last audio it received (at most
    :data:`MAX_RESEND_S`), once per resume: new audio after it is paced like any other, so dropping and
    resuming does not lift the pacing. ``audio_from_ms`` is clamped to the audio received so far: if the
    client's audio starts after the session's clock (the instance died with audio not yet transcribed),
    the clock jumps ahead so the times of later finals stay true, but never past what the session had
    received; a client cannot move its clock (and its share of the model, as admission measures it).
    ``received_ms``: the audio the session had received (default: its clock).
    """

    def __init__(
        self, session: StreamSession, audio_from_ms: int | None, received_ms: int | None = None
    ) -> None:
        self.skip_samples = 0  # counted in samples: frames may be any size, in any encoding
        self.allowance_s = 0.0
        if audio_from_ms is None:
            return
        clock_ms = session.audio_ms
        received = max(clock_ms, received_ms or 0)
        start = min(audio_from_ms, received)
        if start > clock_ms:
            session.skip_to(start)
        else:
            self.skip_samples = (clock_ms - start) * session.config.sample_rate // 1000
        final_end = max(
            (m.audio_end_ms for m in session.history if isinstance(m, TranscriptFinal)), default=0
        )
        self.allowance_s = min(MAX_RESEND_S, max(0, received - max(start, final_end)) / 1000)

    def exempt(self, seconds: float) -> bool:
        """Whether this much audio is part of the re-sent buffer (not paced)."""
        if self.allowance_s <= 0:
            return False
        self.allowance_s -= seconds
        return True

    def trim(self, frame: bytes, sample_bytes: int) -> bytes:
        """``frame`` (whole samples of ``sample_bytes``) without what was transcribed already; what is left
        of it, however short, is audio like any frame."""
        if self.skip_samples <= 0:
            return frame
        cut = min(self.skip_samples, len(frame) // sample_bytes)
        self.skip_samples -= cut
        return frame[cut * sample_bytes :]
