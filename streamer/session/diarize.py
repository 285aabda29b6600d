"""Speaker labels on one session's finals (``diarize``): split at a change of voice, label every part.

A final's words (diarization implies word timings) are tested for change points
(:func:`streamer.pipeline.speakers.plan_part`, :func:`~streamer.pipeline.speakers.pick_change`): where the
voice changes inside what the VAD took for one utterance (a quick reply, an interruption), the final is
split at that word boundary. Each part's audio is embedded and labelled by the session's
:class:`~streamer.pipeline.speakers.SpeakerClusters`; the part becomes its own final with its own
``speaker``, and its words carry it too. All embedding runs on the shared worker thread
(:mod:`streamer.pipeline.speakers_worker`), batched with other sessions'; the event loop only slices.

Diarization is an extra: when the worker refuses (its queue is full) or fails, the final is delivered
whole and without a speaker, never held back or lost.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass

import numpy as np

from streamer.errors import StreamerError
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.speakers import SpeakerClusters, SpeakerState, WordSpan, pick_change, plan_part
from streamer.pipeline.speakers_encoder import unit_mean
from streamer.pipeline.speakers_worker import SpeakerWorker
from streamer.protocol import Word

log = logging.getLogger(__name__)

MAX_CHANGES = 4  # per final: the change-point search stays bounded however long the utterance
MIN_PART_S = 0.1  # a part's audio is padded to this much (a one-word part still gets an embedding)


@dataclass(frozen=True)
class Part:
    """One final's worth of an utterance: its text, words and span on the session's clock, its speaker."""

    text: str
    words: list[Word] | None
    start_ms: int
    end_ms: int
    speaker: int | None = None
    speaker_confidence: float | None = None


class SessionSpeakers:
    """One session's speakers: its clusters (labels 0, 1, 2, … in order of appearance) and the worker.

    It lives with the session, so a session resumed on this instance keeps its speakers' numbers; on
    another instance, :meth:`state` travels with the durable session state and :meth:`restore` takes it up.
    """

    def __init__(self, session_id: str, worker: SpeakerWorker | None) -> None:
        self.session_id = session_id
        self.worker = worker
        self.clusters = SpeakerClusters()
        self._log = logging.LoggerAdapter(log, {"session_id": session_id})

    def state(self) -> SpeakerState:
        """The session's speakers as plain data, for the durable session state."""
        return self.clusters.state()

    def restore(self, state: SpeakerState) -> None:
        """Carry on with the speakers another instance stored: speaker 0 stays speaker 0."""
        try:
            self.clusters.restore(state)
        except ValueError as e:  # a damaged record costs the labels' continuity, not the session
            self._log.warning("stored speakers unusable, numbering afresh: %s", e)

    async def parts(
        self,
        enabled: bool,
        audio: np.ndarray,
        start_ms: int,
        end_ms: int,
        text: str,
        words: list[Word] | None,
    ) -> list[Part]:
        """The finals one utterance (16 kHz ``audio`` from ``start_ms``) becomes: itself when not
        ``enabled``, else one per stretch of one voice, each labelled."""
        whole = Part(text, words, start_ms, end_ms)
        if not enabled or self.worker is None or not text.strip():
            return [whole]
        try:
            return await self._label(self.worker, audio, start_ms, end_ms, text, words)
        except (StreamerError, ValueError) as e:
            code = e.code if isinstance(e, StreamerError) else type(e).__name__
            self._log.warning("speaker labels unavailable for a final: %s", code)
            return [whole]

    async def _label(
        self,
        worker: SpeakerWorker,
        audio: np.ndarray,
        start_ms: int,
        end_ms: int,
        text: str,
        words: list[Word] | None,
    ) -> list[Part]:
        if not words:  # no timings (the alignment failed): the whole utterance is one part
            embedding = await worker.embed_utterance(self.session_id, audio)
            label, confidence = self._assign(embedding, audio.size)
            return [Part(text, words, start_ms, end_ms, label, confidence)]
        spans = [
            WordSpan((w.start_ms - start_ms) / 1000, (w.end_ms - start_ms) / 1000, ends_sentence(w.word))
            for w in words
        ]
        cuts = await self._changes(worker, audio, spans)
        bounds = [0, *cuts, len(words)]
        edges = [start_ms]
        edges += [(words[k - 1].end_ms + words[k].start_ms) // 2 for k in cuts]
        edges.append(end_ms)
        clips = []
        for lo, hi in itertools.pairwise(bounds):
            a = int(max(0.0, spans[lo].start_s) * MODEL_RATE) if lo else 0
            b = int(spans[hi - 1].end_s * MODEL_RATE) if hi < len(words) else audio.size
            clips.append(audio[a : max(b, a + int(MIN_PART_S * MODEL_RATE))])
        # every part embedded at once, so the worker runs them as one batch rather than one call (and one
        # wait behind other sessions' jobs) per part; labelled in order afterwards
        embeddings = await asyncio.gather(*(worker.embed_utterance(self.session_id, c) for c in clips))
        parts: list[Part] = []
        for i, ((lo, hi), clip, embedding) in enumerate(
            zip(itertools.pairwise(bounds), clips, embeddings, strict=True)
        ):
            label, confidence = self._assign(embedding, clip.size)
            labelled = [w.model_copy(update={"speaker": label}) for w in words[lo:hi]]
            part_text = text if len(bounds) == 2 else " ".join(w.word.strip() for w in labelled)
            parts.append(Part(part_text, labelled, edges[i], edges[i + 1], label, confidence))
        return parts

    async def _changes(self, worker: SpeakerWorker, audio: np.ndarray, spans: list[WordSpan]) -> list[int]:
        """Every word index where the voice changes, testing each side again after a split."""
        changes: list[int] = []
        todo = [(0, len(spans))]
        while todo and len(changes) < MAX_CHANGES:
            lo, hi = todo.pop()
            if hi - lo < 2:
                continue
            # mel spectrograms of up to a dozen 1.6 s windows: a few ms of numpy, kept off the loop
            plan = await asyncio.to_thread(plan_part, audio, spans, lo, hi)
            if not plan.boundaries:
                continue
            at = pick_change(plan, await worker.embed_windows(self.session_id, plan.windows))
            if at is None:
                continue
            changes.append(lo + at)
            todo += [(lo, lo + at), (lo + at, hi)]
        return sorted(changes)

    def _assign(self, partials: np.ndarray, samples: int) -> tuple[int, float]:
        """The speaker of one stretch (its partials' embeddings, its length), and how sure: its similarity
        to that speaker before it joined (for a new speaker, how unlike every known one it is; 1.0 for
        the session's first)."""
        embedding = unit_mean(partials)
        before = self.clusters.similarities(embedding)
        label = self.clusters.assign(embedding, weight=samples / MODEL_RATE)
        if label < before.size:
            confidence = float(before[label])
        else:
            confidence = 1.0 - float(before.max()) if before.size else 1.0
        return label, round(min(1.0, max(0.0, confidence)), 4)


def ends_sentence(word: str) -> bool:
    """Whether a final's word ends a sentence (a turn in a dialogue nearly always ends with one)."""
    return word.rstrip().rstrip("\"')»”").endswith((".", "?", "!", "。", "？", "！"))
