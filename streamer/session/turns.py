"""Turn detection: PCM in, VAD, segmentation, and the decision that an utterance has ended.

One room for the end-of-utterance rule: the segmenter's silence and hold, and the speculative decode
started at a pause whose verdict (does the sentence end here?) holds or releases it. The session feeds
frames in and handles what comes out (``Started`` and ``Ended``); nothing else reaches into these parts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from streamer.errors import ConfigError
from streamer.pipeline.asr import AsrResult
from streamer.pipeline.audio import MODEL_RATE, Audio, PcmInput
from streamer.pipeline.fallback import ends_sentence
from streamer.pipeline.hallucination import ends_with_sentence_end
from streamer.pipeline.segmenter import Ended, Event, Paused, Segmenter, SegmenterConfig, Utterance
from streamer.protocol import SessionConfig
from streamer.services import Services

VERDICT_WAIT_MAX_LOAD = 0.4  # the model's busy share above which a pause does not wait for its verdict
# A pause whose latest partial does not end a sentence is speculated on only once its silence has run this
# share of the way from the pause to the end-of-utterance silence (280 ms of the default 160-400 ms): many
# such pauses are commas and breaths that speech resumes from. 0.75 wasted no less and made finals slower
# (piper corpus, 1 session, tiny.en: p95 0.79 s against 0.51 s at 0.5)
LATE_SPECULATION_SHARE = 0.5

Decode = Callable[[Utterance], asyncio.Task[AsrResult]]
Spend = Callable[[str, AsrResult], None]


@dataclass
class _Speculation:
    """A transcription started at a pause, reused if the utterance ends with exactly that audio.

    ``cuts``: the utterance is long (``sentence_cut_s``), so a verdict that the sentence ends at this
    pause ends the utterance there even if speech has resumed since (see :meth:`TurnDetector._cut`).
    """

    segment_id: int
    end_sample: int
    utterance: Utterance
    task: asyncio.Task[AsrResult]
    cuts: bool = False


class TurnDetector:
    """PCM -> VAD -> segmenter -> speculation and verdicts, for one session.

    ``decode`` starts a final's transcription (the session's, so it is traced and batched as one);
    ``spend`` accounts a wasted speculative decode; ``on_release`` is told when a late verdict ended an
    utterance outside :meth:`feed` (the session then handles :meth:`released` in order).
    """

    def __init__(
        self,
        config: SessionConfig,
        services: Services,
        *,
        decode: Decode,
        spend: Spend,
        on_release: Callable[[], None],
        partial_text: Callable[[], str] = str,
    ) -> None:
        self._services = services
        self._decode = decode
        self._spend = spend
        self._on_release = on_release
        self._partial_text = partial_text
        s = services.settings
        self.pcm = PcmInput(config.sample_rate, max_frame_ms=s.max_frame_ms, encoding=config.encoding)
        self._vad = services.vad.new_stream()
        self._base = services.segmenter_config  # before the input rate's thresholds
        self._segmenter = Segmenter(self._base.for_input_rate(config.sample_rate))
        self._speculation: _Speculation | None = None
        self._deferred: Utterance | None = None  # a pause not speculated on yet (see _on_pause)
        self._released: deque[Event] = deque()

    # ---- what the session reads

    @property
    def samples(self) -> int:
        """The audio clock: samples (at the model's rate) segmented so far."""
        return self._segmenter.samples

    @property
    def open_segment_id(self) -> int | None:
        """The segment in speech now, if any."""
        return self._segmenter.open_segment_id

    def open_audio(self) -> Utterance | None:
        return self._segmenter.open_audio()

    @property
    def config(self) -> SegmenterConfig:
        return self._segmenter.config

    # ---- audio in

    def feed(self, frame: bytes) -> list[Event]:
        """One frame of the session's PCM: its segmentation events (pauses are handled here)."""
        return self._segment(self.pcm.push(frame))

    def _segment(self, audio: Audio) -> list[Event]:
        if audio.size == 0:
            return []
        probs, windows = self._vad.probabilities(audio)
        events: list[Event] = []
        for event in self._segmenter.feed(probs, windows):
            if isinstance(event, Paused):
                if self._services.settings.batching:
                    self._on_pause(event.utterance)
            else:
                events.append(event)
        self._speculate_late()
        spec = self._speculation
        if (
            spec is not None
            and not spec.cuts
            and self._segmenter.open_segment_id == spec.segment_id
            and not self._segmenter.pausing(spec.segment_id, spec.end_sample)
        ):
            # speech resumed: the speculative final cannot be this utterance's; withdrawn from the
            # model's queue if it has not run yet, so it costs nothing (an utterance that ended in
            # these events takes or drops it itself). A long utterance's speculation stays: its verdict
            # may still end the utterance at its pause.
            self._drop_speculation()
        return events

    def set_rate(self, config: SessionConfig) -> list[Event]:
        """A new input format: the resampler's tail is segmented first (it may end an utterance)."""
        events = self._segment(self.pcm.flush())
        s = self._services.settings
        self.pcm = PcmInput(config.sample_rate, max_frame_ms=s.max_frame_ms, encoding=config.encoding)
        self._segmenter.config = self._base.for_input_rate(config.sample_rate)
        return events

    def finish(self, reason: str) -> Ended | None:
        """End the open utterance now (commit, close)."""
        return self._segmenter.finish(reason)

    def clear(self) -> int | None:
        """Forget the open utterance without ending it (nothing transcribes it): its segment id."""
        open_id = self._segmenter.open_segment_id
        if open_id is not None:
            self._drop_speculation()
            self._deferred = None
            self._segmenter.finish("cleared")
        return open_id

    def released(self) -> Event | None:
        """The next event a late verdict released (an utterance's end, and the start of the speech that
        followed its pause), if any."""
        return self._released.popleft() if self._released else None

    # ---- turn rules

    def retune(self, base: SegmenterConfig, sample_rate: int) -> None:
        """New turn rules (silence, thresholds): only between utterances. The audio clock and the
        segment numbering carry over, nothing that was spoken is lost."""
        if self._segmenter.open_segment_id is not None:
            raise ConfigError("turn detection can change only between utterances")
        old = self._segmenter
        self._base = base
        self._segmenter = Segmenter(base.for_input_rate(sample_rate))
        self._segmenter.continue_at(old.samples, old.next_segment_id)

    def continue_at(self, samples: int, next_segment_id: int) -> None:
        """Carry on another instance's clock and numbering (a resumed session), before any audio."""
        self._segmenter.continue_at(samples, next_segment_id)

    def skip_to(self, ms_: int) -> None:
        """Move the audio clock ahead to ``ms_`` (audio the session never received)."""
        target = ms_ * MODEL_RATE // 1000
        if target > self._segmenter.samples:
            self._segmenter.samples = target

    # ---- speculation

    def take_speculation(self, utt: Utterance) -> asyncio.Task[AsrResult] | None:
        """The speculative decode of exactly ``utt``'s audio, if one was started (the final reuses it)."""
        spec = self._speculation
        if spec is not None and spec.segment_id == utt.segment_id and spec.end_sample == utt.end_sample:
            self._speculation = None
            self._services.metrics.speculations.labels("used").inc()
            return spec.task
        self._drop_speculation()
        return None

    def drop_speculation(self) -> None:
        self._drop_speculation()

    def abort(self) -> None:
        if self._speculation is not None:
            self._speculation.task.cancel()

    def _on_pause(self, utt: Utterance) -> None:
        """Speculate at a pause that looks like an end: the latest partial finishes a sentence.

        Other pauses wait for :meth:`_speculate_late`: a decode fired at every pause was thrown away
        whenever speech resumed, while a pause whose partial already ends with a full stop is where the
        final usually is (piper corpus, 1 session, tiny.en: wasted speculation 5.8 % -> 4.4 % of model
        time, used/fired 55 % -> 61 %, final p50 and WER unchanged). The partial lags the audio by up to
        its interval, so a finished sentence often still reads unfinished: that pause speculates late.
        """
        spec = self._speculation
        if spec is not None and spec.cuts and not spec.task.done() and spec.segment_id == utt.segment_id:
            # an earlier pause of this long utterance is still being decoded: under load a decode takes
            # longer than a reader's clause, and replacing it at every pause would never cut at all
            return
        self._drop_speculation()  # a pause after speech resumed: the earlier one cannot be the final
        self._deferred = None
        if self._cuts(utt) or ends_with_sentence_end(self._partial_text()):
            self._speculate(utt)
        else:
            self._deferred = utt

    def _cuts(self, utt: Utterance) -> bool:
        """Whether a sentence end at this pause ends ``utt`` even if speech resumes: it is long enough
        that waiting for a longer silence (and merging the next sentence) makes its final the tail.

        Such a pause is speculated on at once, whatever the partial says: a long utterance's partials
        are spaced out (the cadence stretches with its length), so the latest one lags by seconds, and
        a reader's pause between sentences (150-500 ms) is often over before a late speculation.
        """
        cut_s = self._services.settings.sentence_cut_s
        return cut_s > 0 and utt.duration_s >= cut_s

    def _speculate_late(self) -> None:
        """A deferred pause that has lasted long enough to look like an end after all: speculate now."""
        utt = self._deferred
        if utt is None:
            return
        if not self._segmenter.pausing(utt.segment_id, utt.end_sample):
            self._deferred = None  # speech resumed, or the utterance ended (its final decodes it)
            return
        cfg = self._segmenter.config
        late_ms = cfg.pause_ms + LATE_SPECULATION_SHARE * (cfg.end_silence_ms - cfg.pause_ms)
        silence_ms = (self._segmenter.samples - utt.end_sample) * 1000 / MODEL_RATE + cfg.tail_ms
        if silence_ms >= late_ms:
            self._deferred = None
            self._speculate(utt)

    def _speculate(self, utt: Utterance) -> None:
        spec = _Speculation(utt.segment_id, utt.end_sample, utt, self._decode(utt), self._cuts(utt))
        spec.task.add_done_callback(lambda _: self._on_speculated(spec))
        self._speculation = spec
        # Waiting for the verdict only pays while decodes come back within the pause. Under load they do
        # not, and a finished sentence then waits out the hold and merges with the next one (16
        # synchronized corpus sessions: 3 of 48 merged, p95 4.4 s): the pause then ends at the usual
        # silence, and a verdict that is back in time can still hold it.
        if self._services.asr_batcher.utilization() < VERDICT_WAIT_MAX_LOAD:
            self._segmenter.await_verdict(utt.segment_id, utt.end_sample)

    def _drop_speculation(self) -> None:
        """Forget the speculative final: withdrawn from the model's queue if it has not run yet."""
        spec, self._speculation = self._speculation, None
        if spec is None:
            return
        if spec.task.done() and not spec.task.cancelled() and spec.task.exception() is None:
            self._spend("speculative_wasted", spec.task.result())
            self._services.metrics.speculations.labels("wasted").inc()
        else:
            self._services.metrics.speculations.labels("withdrawn").inc()
        spec.task.cancel()

    def _on_speculated(self, spec: _Speculation) -> None:
        """A speculative decode is back while its pause lasts: an unfinished sentence holds the pause."""
        if self._speculation is not spec:
            return
        failed = spec.task.cancelled() or spec.task.exception() is not None
        utt = spec.utterance
        ends = not failed and ends_sentence(spec.task.result(), utt.audio, utt.voiced_ms)
        if spec.cuts and ends:
            self._cut(spec)
            return
        if not self._segmenter.pausing(spec.segment_id, spec.end_sample):
            if spec.cuts and self._segmenter.open_segment_id == spec.segment_id:
                self._drop_speculation()  # speech resumed in mid-sentence: it was not this utterance's
            return
        if not ends and not failed:
            self._segmenter.hold(spec.segment_id, spec.end_sample)
            return
        # the sentence ends here; if its silence already ran out while the decode was on its way, the
        # utterance ends now, in order with the events of the audio still to come
        ended = self._segmenter.release(spec.segment_id, spec.end_sample)
        if ended is not None:
            self._release([ended])

    def _cut(self, spec: _Speculation) -> None:
        """A long utterance's sentence ends at this pause: it ends there now, and its speculative decode
        becomes its final; the audio since the pause (if speech resumed) opens the next utterance.

        Continuous reading pauses between sentences for 150-500 ms, under the end-of-utterance silence:
        its sentences merged into finals of up to ``max_utterance_s``, whose decode was the tail of final
        latency, and a cut at the maximum length fell where no decode was ready.
        """
        events = self._segmenter.cut(spec.segment_id, spec.end_sample)
        if not events:
            # an utterance that ended (or was split) meanwhile: its final takes or drops this decode
            if self._segmenter.open_segment_id == spec.segment_id:
                self._drop_speculation()
            return
        self._deferred = None
        self._release(events)

    def _release(self, events: list[Event]) -> None:
        self._released.extend(events)
        self._on_release()
