"""One live session: audio in, VAD segmentation, partial and final transcription, results out.

The WebSocket handler owns the socket and feeds this object from its single reader task. Finals are
produced strictly in order by one emitter task reading a bounded queue of pending transcriptions
(:mod:`streamer.session.finals`), so a slow model pushes back on the reader (and through TCP on the
client) instead of piling up audio; a model failure ends the session (``failure``, ``on_fatal``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from streamer import tracing
from streamer.errors import StreamerError
from streamer.guards.load import LoadMeter, speech_share
from streamer.guards.ratelimit import AudioPacer
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.pipeline.audio import MODEL_RATE, PcmInput
from streamer.pipeline.segmenter import Ended, Event, SegmenterConfig, Started, Utterance
from streamer.protocol import (
    EndReason,
    ServerMessage,
    SessionConfig,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranslationFinal,
)
from streamer.services import Services
from streamer.session.diarize import SessionSpeakers
from streamer.session.finals import END_REASONS, Dropped, Finals, Pending, ResultMessage, ms
from streamer.session.outbox import Outbox
from streamer.session.partials import Partials
from streamer.session.spans import decode_windows, windowed
from streamer.session.turns import TurnDetector

log = logging.getLogger(__name__)


class StreamSession:
    """A thin owner over its turn detector (where utterances end) and its finals (what is sent for
    them): surfaces call its intent methods (``push_audio``, ``commit``, ``clear``, ``retune``,
    ``restore``, ``skip_to``), never its parts."""

    def __init__(
        self,
        session_id: str,
        key_id: str,
        config: SessionConfig,
        services: Services,
        *,
        load: LoadMeter | None = None,
    ) -> None:
        self.session_id = session_id
        self.key_id = key_id
        self.config = config
        self.services = services
        self._turns = TurnDetector(
            config,
            services,
            decode=self._transcribe,
            spend=self.spend,
            on_release=self._on_release,
            partial_text=lambda: self._partials.text,
        )
        self.outbox: Outbox | None = None
        self.load = load if load is not None else LoadMeter()
        self.speech_s = 0.0  # audio of the utterances transcribed so far
        self.pacer: AudioPacer | None = None  # its connection's real-time pacer, kept for a resume (ws.py)
        self._started_at = time.monotonic()
        # segmentation events are handled one batch at a time, in order: the reader's audio, and utterance
        # ends released when a late speculative decode says the sentence ended at its pause
        self._events_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._partials = Partials(self)
        self.trace: tracing.SessionTrace = tracing.NOOP  # its spans (set at the upgrade if tracing is on)
        # write-through of each final and translation (durable sessions), awaited before it is sent, so a
        # final a client saw is never lost with its instance
        self.on_result: Callable[[TranscriptFinal | TranslationFinal], Awaitable[None]] | None = None
        self._log = logging.LoggerAdapter(log, {"session_id": session_id})
        self.speakers = SessionSpeakers(session_id, services.speakers)  # labels with ``diarize``
        self._finals = Finals(self)  # its emitter, numbering and history

    @property
    def seq(self) -> int:
        """The number of the latest final."""
        return self._finals.seq

    @property
    def history(self) -> Sequence[ResultMessage]:
        """The latest finals and translations, for a resume's replay."""
        return self._finals.history

    @property
    def started_at(self) -> float:
        """When the session started (``time.monotonic``; a resumed one keeps its first start)."""
        return self._started_at

    @property
    def pcm(self) -> PcmInput:
        """The input format: its sample size, largest frame and seconds per frame."""
        return self._turns.pcm

    @property
    def open_segment_id(self) -> int | None:
        """The utterance in speech now, if any."""
        return self._turns.open_segment_id

    @property
    def turn_config(self) -> SegmenterConfig:
        """The turn rules in force (at the input's rate)."""
        return self._turns.config

    @property
    def failure(self) -> StreamerError | None:
        """Why the session cannot go on (its model failed), if it cannot."""
        return self._finals.failure

    @property
    def on_fatal(self) -> Callable[[StreamerError], None] | None:
        """Told once when the session fails (its connection ends on it)."""
        return self._finals.on_failure

    @on_fatal.setter
    def on_fatal(self, callback: Callable[[StreamerError], None] | None) -> None:
        self._finals.on_failure = callback

    def restore(
        self, seq: int, history: Sequence[ResultMessage], audio_ms: int, next_segment_id: int, age_s: float
    ) -> None:
        """Carry on a session another instance served: its numbering, replayable finals, audio clock, and
        age (``age_s`` since it started). Only before any audio."""
        self._turns.continue_at(audio_ms * MODEL_RATE // 1000, next_segment_id)
        self._finals.seq = seq
        self._finals.history = list(history)
        self._started_at = time.monotonic() - max(0.0, age_s)

    def skip_to(self, audio_ms: int) -> None:
        """Move the audio clock ahead to ``audio_ms``: audio this session never received (it died with
        its instance), so the times of later finals stay true."""
        self._turns.skip_to(audio_ms)

    def retune(self, turns: SegmenterConfig) -> None:
        """New turn rules (before the input rate's thresholds), between utterances only (``ConfigError``
        otherwise); a later sample-rate change keeps them."""
        self._turns.retune(turns, self.config.sample_rate)

    async def clear(self) -> int | None:
        """Forget the open utterance: it is never transcribed nor answered. Returns its segment id."""
        async with self._events_lock:
            await self._flush_released()
            cleared = self._turns.clear()
            if cleared is not None:
                self.services.asr_batcher.discard_partial(self.session_id)
            return cleared

    # ---- lifecycle

    def attach(self, outbox: Outbox, last_seq: int | None = None) -> list[TranscriptFinal | TranslationFinal]:
        """Bind to a connection's outbox (first connect or resume) and start the final emitter.

        On resume, returns the finals (and their translations) after ``last_seq`` that the client has not
        seen; they are taken in the same step as the new outbox is attached, so every later final goes
        through the new outbox and none is replayed twice.
        """
        self.outbox = outbox
        self._finals.start()
        if last_seq is None:
            return []
        return [m for m in self.history if m.seq > last_seq]

    async def detach(self) -> None:
        """The connection dropped: finalize the open utterance; finals keep accruing in ``history``."""
        self.outbox = None
        self.services.asr_batcher.discard_partial(self.session_id)
        await self.commit("disconnect")

    @property
    def speech_share(self) -> float:
        """The share of this session's audio expected to be speech (admission's load estimate)."""
        return speech_share(self.speech_s, self._turns.samples / MODEL_RATE)

    @property
    def audio_ms(self) -> int:
        return ms(self._turns.samples)

    async def push_audio(self, frame: bytes) -> None:
        """One binary frame: validate, resample, segment, and schedule transcription."""
        async with self._events_lock:
            await self._flush_released()
            events = self._turns.feed(frame)
            self.services.metrics.audio_seconds.inc(self.pcm.seconds(frame))
            for event in events:
                await self._on_event(event)
        self._maybe_partial()

    async def commit(self, reason: str = "commit") -> None:
        """End the open utterance now (``input_audio.commit``, ``session.close``, shutdown)."""
        async with self._events_lock:
            await self._flush_released()
            ended = self._turns.finish(reason)
            if ended is not None:
                await self._on_event(ended)

    async def drain(self, reason: EndReason = "close") -> None:
        """Finalize what is buffered and wait until every final (and translation) has been queued out.

        ``reason`` says who ended the stream: ``close`` the client, ``drain`` the server."""
        await self.commit(reason)
        await self._finals.drain()

    async def abort(self) -> None:
        """The connection is gone: stop work in flight without delivering it, and wait until it has."""
        self._turns.abort()
        emitter = self._finals.abort()
        stopping = {t for t in (emitter, *self._background) if t is not None and not t.done()}
        for task in stopping:
            task.cancel()
        self.services.asr_batcher.discard_partial(self.session_id)
        if stopping:
            # asyncio.wait, not ``await task``: the tasks' own ends (cancelled) are expected and not ours
            # to raise, while a cancellation aimed at the task calling abort() still propagates
            done, _ = await asyncio.wait(stopping)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    self._log.warning("task %s ended with %r", task.get_name(), task.exception())
        self.trace.close()

    async def update_config(self, config: SessionConfig) -> None:
        """Apply a validated ``session.update``; a new sample rate flushes the resampler first, and what
        its tail completes (an utterance's end, say) is handled like any other audio."""
        if (config.sample_rate, config.encoding) != (self.config.sample_rate, self.config.encoding):
            async with self._events_lock:
                await self._flush_released()
                for event in self._turns.set_rate(config):
                    await self._on_event(event)
        self.config = config

    # ---- segmentation events

    async def send(self, message: ServerMessage) -> None:
        """Queue a message that must not be dropped (to nobody while detached)."""
        if self.outbox is not None:
            await self.outbox.put(message)

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, Started):
            self._partials.started(event.segment_id)
            await self.send(SpeechStarted(segment_id=event.segment_id, audio_start_ms=ms(event.start_sample)))
        elif isinstance(event, Ended):
            self.services.asr_batcher.discard_partial(self.session_id)
            await self.send(SpeechStopped(segment_id=event.segment_id, audio_end_ms=ms(event.end_sample)))
            utt = event.utterance
            end_reason = END_REASONS[event.reason]
            if utt is None:
                self._turns.drop_speculation()
                self.trace.done(event.segment_id, "too_short")
                # its speech.stopped was sent: its answer (an empty final) follows, in order
                start, end = ms(event.start_sample), ms(event.end_sample)
                await self._finals.put(Dropped(event.segment_id, start, end, end_reason))
                return
            self._finals.ended_at[event.segment_id] = time.monotonic()
            self.trace.vad_end(event.segment_id, ms(event.end_sample))
            self.speech_s += utt.duration_s
            self.load.record(speech_s=utt.duration_s, key=self.key_id)
            self.load.fallback.record_speech(self.key_id, self.session_id, utt.duration_s)
            speculative = self._turns.take_speculation(utt)
            if speculative is not None:
                await self._finals.put(Pending(utt, speculative, "speculative_used", end_reason))
            else:
                await self._finals.put(Pending(utt, self._transcribe(utt), "final", end_reason))

    def _on_release(self) -> None:
        """A late verdict ended an utterance outside a push: handled in order with the audio to come."""
        self._keep(asyncio.create_task(self._flush_released_locked(), name=f"released-{self.session_id}"))

    async def _flush_released_locked(self) -> None:
        async with self._events_lock:
            await self._flush_released()

    async def _flush_released(self) -> None:
        """Handle utterance ends the segmenter released outside of ``feed`` (caller holds the lock)."""
        while (ended := self._turns.released()) is not None:
            await self._on_event(ended)

    def spend(self, kind: str, result: AsrResult) -> None:
        """Account the model time a result cost to what it was for.

        Admission's load estimate counts the work a session cannot do without (finals, speculative and
        fallback decodes), not partials: they are dropped and spaced out as load grows, so at low load they
        would make the model look several times busier per second of speech than it is at high load.
        """
        if kind != "partial":
            self.load.record(model_s=result.model_s, key=self.key_id)
        metrics = self.services.metrics
        metrics.model_work.labels(kind).inc(result.model_s)
        metrics.model_window.labels("padding").inc(result.padding_s)
        metrics.model_window.labels("audio").inc(max(0.0, result.window_s - result.padding_s))

    def request_for(self, utt: Utterance) -> AsrRequest:
        config = self.config
        return AsrRequest(
            utt.audio, config.task, config.language, languages=tuple(config.languages), prompt=config.prompt,
            hotwords=", ".join(config.keywords), temperature=config.temperature, logprobs=config.logprobs,
        )  # fmt: skip

    def _transcribe(self, utt: Utterance) -> asyncio.Task[AsrResult]:
        # its model batches belong to the utterance's span (opened here when it is speculative)
        context = tracing.context_for(self.trace.utterance(utt.segment_id))
        request = self.request_for(utt)
        if not windowed(utt.audio):
            return asyncio.create_task(self._decode(request), context=context)
        # a span longer than the model hears (a manual turn): decoded in windows, one final
        window = functools.partial(dataclasses.replace, request)
        joined = decode_windows(utt.audio, lambda audio: self._decode(window(audio=audio)))
        return asyncio.create_task(joined, context=context)

    async def _decode(self, request: AsrRequest) -> AsrResult:
        return await self.services.asr_batcher.submit_final(
            self.session_id, request.group, request, tenant=self.key_id
        )

    async def fallback(self, request: AsrRequest) -> AsrResult:
        result = await self._decode(request)
        self.spend("fallback", result)
        self.load.fallback.charge(self.key_id, self.session_id, result.model_s)
        return result

    def fallback_allowed(self) -> bool:
        """Whether this session and its key have fallback model time left (``STREAMER_FALLBACK_BUDGET``)."""
        return self.load.fallback.allows(self.key_id, self.session_id, self.services.settings.fallback_budget)

    # ---- partials

    def _maybe_partial(self) -> None:
        task = self._partials.request(self._turns.open_audio())
        if task is not None:
            self._keep(task)

    def _keep(self, task: asyncio.Task[None]) -> None:
        """A task of this session's, referenced until it ends and joined by :meth:`abort`."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)
