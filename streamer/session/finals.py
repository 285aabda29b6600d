"""A session's finals, strictly in order: one bounded queue of pending transcriptions, one emitter task.

The reader puts each ended utterance with its decode; the emitter settles them one at a time (fallback
decodes, word timings, translations), numbers them and keeps the latest for a resume. The queue is
bounded, so a slow model pushes back on the reader (and through TCP on the client).

A decode that fails ends the emitter for good: the failure is kept (:attr:`Finals.failure`), reported
once (``on_failure``), what is queued is cancelled, and later puts are dropped, so nothing ever waits for
room in a queue whose consumer has gone (issue 22, D1). The session's connection ends on that report.

Every segment whose end was announced (``speech.stopped``) gets exactly one terminal answer, in order: its
final(s), an empty final that says why it has none (``dropped``: a blip too short to decode, or audio the
decodes found no speech in), or a ``warning`` with its ``segment_id`` (speech that could not be
transcribed). Vendor surfaces render that answer as their vendor does; a client awaiting it never hangs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from streamer import tracing
from streamer.errors import StreamerError
from streamer.pipeline.align import word_timings
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.fallback import Outcome, Verdict, settle
from streamer.pipeline.segmenter import Utterance
from streamer.protocol import (
    Decoding,
    EndReason,
    ErrorEvent,
    ServerMessage,
    SessionConfig,
    TokenLogprob,
    TranscriptFinal,
    TranslationFinal,
    Warning_,
)
from streamer.services import Services
from streamer.session import spans
from streamer.session.diarize import Part, SessionSpeakers

log = logging.getLogger(__name__)

PENDING_FINALS = 4  # per session; more waits (backpressure) rather than buffering
# finals and translations kept for a resume's replay, as many as the durable copy keeps (durable.py)
HISTORY_KEEP = 64

ResultMessage = TranscriptFinal | TranslationFinal

# the segmenter's reason for an end, as a final tells it (EndReason): a Deepgram Finalize is the client's
# commit, a dropped connection's end the server's drain
END_REASONS: dict[str, EndReason] = {
    "silence": "silence",
    "max_length": "max_length",
    "commit": "commit",
    "finalize": "commit",
    "close": "close",
    "drain": "drain",
    "disconnect": "drain",
}


def _never() -> bool:
    return False


def ms(samples: int) -> int:
    return samples * 1000 // MODEL_RATE


@dataclass(frozen=True)
class Pending:
    """An ended utterance, its first decode, and what that decode was (``final``, ``speculative_used``)."""

    utterance: Utterance
    task: asyncio.Task[AsrResult]
    kind: str
    end_reason: EndReason


@dataclass(frozen=True)
class Dropped:
    """An ended segment with nothing to decode (too short): its empty final, in order with the rest."""

    segment_id: int
    start_ms: int
    end_ms: int
    end_reason: EndReason


class Host(Protocol):
    """What the emitter needs from its session (``StreamSession``)."""

    session_id: str
    services: Services
    config: SessionConfig
    trace: tracing.SessionTrace
    on_result: Callable[[ResultMessage], Awaitable[None]] | None
    speakers: SessionSpeakers

    def request_for(self, utt: Utterance) -> AsrRequest: ...

    async def fallback(self, request: AsrRequest) -> AsrResult: ...

    def fallback_allowed(self) -> bool: ...

    def spend(self, kind: str, result: AsrResult) -> None: ...

    async def send(self, message: ServerMessage) -> None: ...


class Finals:
    """The session's pending finals and the one task that emits them."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._queue: asyncio.Queue[Pending | Dropped | None] = asyncio.Queue(PENDING_FINALS)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False  # failed or aborted: nothing is emitted any more
        self.failure: StreamerError | None = None
        self.on_failure: Callable[[StreamerError], None] | None = None
        self.seq = 0
        self._history: deque[ResultMessage] = deque(maxlen=HISTORY_KEEP)
        self.ended_at: dict[int, float] = {}  # segment id -> when its end was detected
        self._log = logging.LoggerAdapter(log, {"session_id": host.session_id})

    @property
    def history(self) -> Sequence[ResultMessage]:
        """The latest finals and translations (at most :data:`HISTORY_KEEP`), for a resume's replay."""
        return self._history

    @history.setter
    def history(self, messages: Sequence[ResultMessage]) -> None:
        self._history = deque(messages, maxlen=HISTORY_KEEP)

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def start(self) -> None:
        """Start the emitter (once: a session that is resumed keeps its emitter)."""
        if self._task is None and not self._stopped:
            self._task = asyncio.create_task(self._emit(), name=f"finals-{self._host.session_id}")

    async def put(self, pending: Pending | Dropped) -> None:
        """Queue an ended utterance; waits for room while the emitter works, never once it has stopped."""
        if self._stopped:
            if isinstance(pending, Pending):
                pending.task.cancel()
            return
        await self._queue.put(pending)
        if self._stopped:  # stopped while we waited for room: nothing will take it
            self._clear()

    async def drain(self) -> None:
        """Wait until every queued final has been emitted; raises the emitter's failure, if it failed."""
        if self.failure is not None:
            raise self.failure
        if self._task is None or self._task.done():
            return
        await self._queue.put(None)
        await asyncio.wait({self._task})
        if self.failure is not None:
            raise self.failure

    def abort(self) -> asyncio.Task[None] | None:
        """Stop emitting: cancel the emitter and every queued decode; the task to join, if any."""
        self._stopped = True
        self._clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        return self._task

    def _clear(self) -> None:
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if isinstance(pending, Pending):
                pending.task.cancel()

    def _fail(self, e: StreamerError, segment_id: int, what: str) -> None:
        self._log.warning("%s for segment %d failed: %s", what, segment_id, e.code)
        self._host.trace.done(segment_id, "error")
        self.failure = e
        self._stopped = True
        self._clear()  # wakes a reader waiting for room: the queue is never taken from again
        if self.on_failure is not None:
            self.on_failure(e)

    async def _emit(self) -> None:
        host = self._host
        while (pending := await self._queue.get()) is not None:
            if isinstance(pending, Dropped):
                await self._empty(
                    pending.segment_id, pending.start_ms, pending.end_ms, "too_short", pending.end_reason
                )
                continue
            utt = pending.utterance
            tracing.enter(host.trace.utterance(utt.segment_id))  # fallbacks, word timings, translations
            try:
                result = await pending.task
            except StreamerError as e:
                self._fail(e, utt.segment_id, "final")
                return
            host.spend(pending.kind, result)
            try:
                verdict = await settle(
                    result,
                    host.request_for(utt),
                    utt.audio,
                    utt.speech_ms,
                    host.fallback,
                    utt.voiced_ms,
                    # a span decoded in windows has no fallback: one decode of it all would be clipped
                    host.fallback_allowed if not spans.windowed(utt.audio) else _never,
                )
            except StreamerError as e:
                self._fail(e, utt.segment_id, "fallback decode")
                return
            self._count(verdict)
            if verdict.result is not None:
                await self._deliver(utt, verdict.result, pending.end_reason)
                host.trace.done(utt.segment_id, verdict.outcome.value)
                continue
            host.trace.done(utt.segment_id, verdict.outcome.value)
            self.ended_at.pop(utt.segment_id, None)
            if verdict.outcome is Outcome.UNRECOGNIZED_SPEECH:
                await self._warn(
                    Warning_(
                        code="unrecognized_speech",
                        message="speech was heard but could not be transcribed",
                        segment_id=utt.segment_id,
                    )
                )
            else:  # noise, breath, a rejected hallucination: still the segment's answer, empty
                await self._empty(
                    utt.segment_id, ms(utt.start_sample), ms(utt.end_sample), "nonspeech", pending.end_reason
                )

    def _count(self, verdict: Verdict) -> None:
        metrics = self._host.services.metrics
        metrics.final_outcomes.labels(verdict.outcome.value).inc()
        for attempt in verdict.attempts:
            metrics.decode_attempts.labels(attempt).inc()
        if verdict.result is None and verdict.reason is not None:
            metrics.finals_rejected.labels(verdict.reason).inc()
        if verdict.outcome is not Outcome.FIRST_TRY:
            self._log.info(
                "final %s after %s (%s)", verdict.outcome.value, "+".join(verdict.attempts), verdict.reason
            )

    async def _warn(self, warning: Warning_) -> None:
        self._host.services.metrics.warnings.labels(warning.code).inc()
        await self._host.send(warning)

    async def _keep(self, message: ResultMessage) -> None:
        self._history.append(message)
        if self._host.on_result is not None:
            await self._host.on_result(message)

    async def _empty(
        self,
        segment_id: int,
        start_ms: int,
        end_ms: int,
        why: Literal["too_short", "nonspeech"],
        end_reason: EndReason,
    ) -> None:
        """The terminal answer of a segment without text: an empty final saying why (kept for a resume,
        never translated)."""
        self.ended_at.pop(segment_id, None)
        self.seq += 1
        final = TranscriptFinal(
            segment_id=segment_id,
            seq=self.seq,
            text="",
            language=self._host.config.language or "",
            audio_start_ms=start_ms,
            audio_end_ms=end_ms,
            dropped=why,
            end_reason=end_reason,
        )
        await self._keep(final)
        await self._host.send(final)

    async def _deliver(self, utt: Utterance, result: AsrResult, end_reason: EndReason) -> None:
        host = self._host
        services, config = host.services, host.config
        words = None
        if config.word_timestamps or config.diarize:  # a second pass of the model, through the same batcher
            words = await word_timings(
                services.asr_batcher,
                host.session_id,
                utt.audio,
                result.text,
                result.language,
                ms(utt.start_sample),
            )
        # with diarize, one final per stretch of one voice, each with its speaker (session/diarize.py)
        start_ms, end_ms = ms(utt.start_sample), ms(utt.end_sample)
        parts = await host.speakers.parts(config.diarize, utt.audio, start_ms, end_ms, result.text, words)
        for i, part in enumerate(parts):
            await self._deliver_part(utt, result, part, end_reason, more=i < len(parts) - 1)
        self.ended_at.pop(utt.segment_id, None)  # each part's latency counts from the utterance's end

    async def _deliver_part(
        self,
        utt: Utterance,
        result: AsrResult,
        part: Part,
        end_reason: EndReason,
        *,
        more: bool = False,
    ) -> None:
        host = self._host
        services, config = host.services, host.config
        language = result.language
        self.seq += 1
        final = TranscriptFinal(
            segment_id=utt.segment_id,
            seq=self.seq,
            text=part.text,
            language=language,
            language_probability=result.language_probability,
            audio_start_ms=part.start_ms,
            audio_end_ms=part.end_ms,
            words=part.words,
            speaker=part.speaker,
            speaker_confidence=part.speaker_confidence,
            more=True if more else None,
            end_reason=end_reason,
            logprobs=[TokenLogprob(token=t, logprob=lp) for t, lp in result.logprobs or ()]
            if config.logprobs
            else None,
            decoding=Decoding(
                avg_logprob=result.avg_logprob,
                compression_ratio=result.compression_ratio,
                no_speech_prob=result.no_speech_prob,
                temperature=result.temperature,
                tokens=list(result.tokens),
            )
            if config.decoding
            else None,
        )
        await self._keep(final)
        services.metrics.finals.inc()
        latency = time.monotonic() - self.ended_at.get(utt.segment_id, time.monotonic())
        services.metrics.final_latency.observe(latency)
        await host.send(final)
        host.trace.final(utt.segment_id, self.seq, latency)
        translator = services.translator
        if translator is None or not config.translate_to:
            return
        host.trace.translating(utt.segment_id, config.translate_to)
        try:
            translations = await translator.translate(
                host.session_id, part.text, language, config.translate_to
            )
        except StreamerError as e:
            host.trace.translated(utt.segment_id, e.code)
            # the transcript is delivered; say plainly that its translation is not coming
            await host.send(
                ErrorEvent(code=e.code, message=f"translation failed: {e.message}", retryable=e.retryable)
            )
            return
        host.trace.translated(utt.segment_id)
        for translated_to, text in translations:
            msg = TranslationFinal(segment_id=utt.segment_id, seq=self.seq, language=translated_to, text=text)
            await self._keep(msg)
            await host.send(msg)
