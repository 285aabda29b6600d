"""Partial transcripts of the open utterance: when to ask for one, and what becomes of it.

Best effort: a partial is dropped when the model is behind (the batcher coalesces them, latest wins),
spaced out as load grows, and never reported as an error. A span longer than the model's window (a
manual turn) is decoded against its closed windows: each window before the last is decoded once and
kept, and a partial decodes only the last window, so a partial's cost stays bounded however long the
span grows (decoding the whole span each time costs the square of its length, and the engine clips
what is past 30 s anyway).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from typing import Protocol

from streamer.errors import StreamerError
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.segmenter import Utterance
from streamer.pipeline.stability import PartialStabilizer
from streamer.protocol import SessionConfig, TranscriptPartial, Warning_
from streamer.services import Services
from streamer.session.outbox import Outbox
from streamer.session.spans import cuts, windowed

LAG_WARNING_EVERY_S = 5.0
# Past this much open audio, partials come less often in proportion to its length: each costs a decode
# of all of it, so at a fixed cadence an utterance's partials cost the square of its length; stretched,
# the cost grows with its length only (and a span past the model's window decodes one window anyway)
STRETCH_AFTER_S = 5.0
STALE_AFTER_S = 1.5


class Host(Protocol):
    """What partials need from their session."""

    session_id: str
    key_id: str
    config: SessionConfig
    services: Services
    outbox: Outbox | None

    @property
    def open_segment_id(self) -> int | None: ...

    def request_for(self, utt: Utterance) -> AsrRequest: ...

    def spend(self, kind: str, result: AsrResult) -> None: ...


class Partials:
    def __init__(self, host: Host) -> None:
        self._host = host
        self._stabilizer = PartialStabilizer()
        self._mark = 0  # open-segment length (samples) at the last partial request
        self._speech_at: dict[int, float] = {}  # open segment id -> when its speech was detected
        self._closed: dict[int, str] = {}  # a long span's closed windows (by start sample): their text
        self._in_flight = False  # a long span's partial is being decoded (its windows one by one)
        self._last_lag_warning = 0.0
        self.text = ""  # the open utterance's latest partial (the turn detector reads its last word)

    def started(self, segment_id: int) -> None:
        """A new utterance: its partials start afresh."""
        self._stabilizer = PartialStabilizer()
        self._mark = 0
        self._speech_at = {segment_id: time.monotonic()}
        self._closed = {}
        self.text = ""

    def request(self, utt: Utterance | None) -> asyncio.Task[None] | None:
        """A partial of the open utterance ``utt``, if one is due: the task that delivers it."""
        host = self._host
        s = host.services.settings
        if not host.config.interim_results or utt is None:
            return None
        # under load, partials come less often so finals keep their latency
        load = host.services.asr_batcher.utilization() if s.batching else 0.0
        # (measured on the piper corpus, 16 synchronized sessions: partials took 40 % of the model's time
        # while finals waited, so they make room from a third of the model's time on)
        interval_ms = s.partial_interval_ms * (
            1 if load < 0.35 else 2 if load < 0.6 else 4 if load < 0.8 else 8
        )
        stretch = max(1.0, utt.audio.size / MODEL_RATE / STRETCH_AFTER_S)
        if utt.audio.size - self._mark < interval_ms * stretch * MODEL_RATE / 1000:
            return None
        if windowed(utt.audio):
            if self._in_flight:
                return None
            self._mark = utt.audio.size
            self._in_flight = True
            return asyncio.create_task(self._long(utt))
        self._mark = utt.audio.size
        return asyncio.create_task(self._deliver(utt.segment_id, self._submit(utt)))

    def _submit(self, utt: Utterance) -> asyncio.Future[AsrResult | None]:
        host = self._host
        request = host.request_for(utt)
        return host.services.asr_batcher.submit_partial(
            host.session_id, request.group, request, stale_after=STALE_AFTER_S, tenant=host.key_id
        )

    async def _long(self, utt: Utterance) -> None:
        """A partial of a span past the model's window: its closed windows (decoded once), then the last."""
        try:
            bounds = cuts(utt.audio)
            texts = []
            for a, b in itertools.pairwise(bounds[:-1]):
                if a not in self._closed:
                    window = dataclasses.replace(utt, audio=utt.audio[a:b])
                    result = await self._result(self._submit(window))
                    if result is None:
                        return
                    self._closed[a] = result.text.strip()
                texts.append(self._closed[a])
            last = dataclasses.replace(utt, audio=utt.audio[bounds[-2] :])
            await self._deliver(utt.segment_id, self._submit(last), " ".join(t for t in texts if t))
        finally:
            self._in_flight = False

    async def _result(self, fut: asyncio.Future[AsrResult | None]) -> AsrResult | None:
        try:
            result = await fut
        except StreamerError:
            return None  # partials are best effort; the final reports model errors
        if result is None:
            await self._warn_lagging()
            return None
        self._host.spend("partial", result)
        return result

    async def _deliver(
        self, segment_id: int, fut: asyncio.Future[AsrResult | None], prefix: str = ""
    ) -> None:
        host = self._host
        result = await self._result(fut)
        if result is None or host.open_segment_id != segment_id or host.outbox is None:
            return
        text = f"{prefix} {result.text.strip()}" if prefix else result.text
        self.text = text
        update = self._stabilizer.update(text)
        if update is None:
            return
        partial = TranscriptPartial(segment_id=segment_id, text=update.text, stable_text=update.stable_text)
        if not host.outbox.offer(partial):
            host.services.metrics.partials_dropped.labels("outbox").inc()
            await self._warn_lagging()
        elif (speech_at := self._speech_at.pop(segment_id, None)) is not None:
            host.services.metrics.first_partial_latency.observe(time.monotonic() - speech_at)

    async def _warn_lagging(self) -> None:
        now = time.monotonic()
        outbox = self._host.outbox
        if outbox is None or now - self._last_lag_warning < LAG_WARNING_EVERY_S:
            return
        self._last_lag_warning = now
        outbox.offer(
            Warning_(code="lagging", message="the server is behind; partial results are being skipped")
        )
