"""Speaker labels on one session's finals (``diarize``): split at a change of voice, label every part.

A final's words (diarization implies word timings) are tested for change points
(:func:`streamer.pipeline.speakers.change_candidates`, :func:`~streamer.pipeline.speakers.pick_change`):
where the voice changes inside what the VAD took for one utterance (a quick reply, an interruption), the
final is split at that word boundary. Each part's audio is embedded and labelled by the session's
:class:`~streamer.pipeline.speakers.SpeakerClusters`; the part becomes its own final with its own
``speaker``, and its words carry it too. All embedding runs on the shared worker thread
(:mod:`streamer.pipeline.speakers_worker`), batched with other sessions', features included; the event loop
only slices. A stretch's test and its embedding go in one job (:class:`_Search`), so a final with one
voice costs one encoder call.

Diarization is an extra: when the worker refuses (its queue is full) or fails, the final is delivered
whole and without a speaker, never held back or lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

from streamer.errors import StreamerError
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.speakers import (
    SpeakerClusters,
    SpeakerState,
    WordSpan,
    change_candidates,
    change_windows,
    part_of,
    pick_change,
)
from streamer.pipeline.speakers_encoder import partial_starts, unit_mean
from streamer.pipeline.speakers_worker import SpeakerWorker
from streamer.protocol import Word

log = logging.getLogger(__name__)

MAX_CHANGES = 4  # per final: the change-point search stays bounded however long the utterance
MIN_PART_S = 0.1  # a part's audio is padded to this much (a one-word part still gets an embedding)
SPLIT_MEMORY = 3  # finals: a session none of whose last three finals split likely speaks in one voice
CHEAP_WHOLE_WINDOWS = 3  # a final of up to 3 partial windows (3.1 s) is embedded whole with its test
MAX_WHOLE_WINDOWS = 8  # and one of up to 8 (7 s) in a session of one voice; a longer one is tested first


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
        self.clusters = SpeakerClusters.of(worker.kind) if worker is not None else SpeakerClusters()
        self._splits: deque[bool] = deque(maxlen=SPLIT_MEMORY)  # its last finals: split or not
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
        # Embed the whole final with its change-point test (one encoder call, not two one after the
        # other) where it is likely to be one part: in a session whose last finals all were (a talk, a
        # dictation), or where it is short (short finals rarely split, and their windows cost little).
        # In a dialogue a long final mostly splits, and its whole embedding would be wasted windows,
        # the more the longer it is, for the same one call saved.
        windows = len(partial_starts(audio.size))
        embed_whole = windows <= CHEAP_WHOLE_WINDOWS or (
            not any(self._splits) and windows <= MAX_WHOLE_WINDOWS
        )
        found = await _Search(self.session_id, worker, audio, spans, embed_whole).parts()
        self._splits.append(len(found) > 1)
        parts: list[Part] = []
        for (lo, hi), (clip, embedding) in found.items():
            label, confidence = self._assign(embedding, clip.size)
            labelled = [w.model_copy(update={"speaker": label}) for w in words[lo:hi]]
            part_text = text if len(found) == 1 else " ".join(w.word.strip() for w in labelled)
            start = start_ms if lo == 0 else (words[lo - 1].end_ms + words[lo].start_ms) // 2
            end = end_ms if hi == len(words) else (words[hi - 1].end_ms + words[hi].start_ms) // 2
            parts.append(Part(part_text, labelled, start, end, label, confidence))
        return parts

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


@dataclass(frozen=True)
class _Tested:
    """One stretch of a final's words, tested: where a new voice starts in it (None: one voice), its
    audio, and that audio's partial embeddings when they were made with the test (else None)."""

    at: int | None
    clip: np.ndarray
    partials: np.ndarray | None


class _Search:
    """A final's change points and its parts' embeddings, in few encoder calls, one after another.

    Each stretch of words (first the whole final) is one job on the worker: the windows either side of
    its candidate boundaries, and its own audio's partials where they are likely to be wanted: the
    whole final's when ``embed_whole`` (a final with one voice is then one encoder call, not a test call
    and then an embedding call; in a dialogue, where a long final mostly splits, they would be wasted
    windows) and a stretch's with no boundary to test (it is a part). Where a stretch splits,
    both sides are tested at once (one call, not one after the other), as long as fewer than
    ``MAX_CHANGES`` changes have been found; the parts still without partials are embedded together at
    the end. :meth:`parts` walks the stretches in the order a one-at-a-time search does (right side
    first, at most ``MAX_CHANGES`` changes), so its cuts are that search's.
    """

    def __init__(
        self,
        session_id: str,
        worker: SpeakerWorker,
        audio: np.ndarray,
        spans: list[WordSpan],
        embed_whole: bool,
    ) -> None:
        self.session_id = session_id
        self.embed_whole = embed_whole
        self.worker = worker
        self.audio = audio
        self.spans = spans
        self._tests: dict[tuple[int, int], asyncio.Task[_Tested]] = {}
        self._found = 0  # changes found so far, in whatever order the tests came back

    async def parts(self) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        """Each part's (first word, end word) → its audio and partial embeddings, in word order."""
        leaves: dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]] = {}
        changes = 0
        todo = [(0, len(self.spans))]
        try:
            while todo:
                lo, hi = todo.pop()
                if changes >= MAX_CHANGES:  # a part as it is: its test, if any, is not waited for
                    leaves[lo, hi] = (self._clip(lo, hi), None)
                    continue
                if (lo, hi) not in self._tests:  # not tested at once: found past the cap, in test order
                    self._start(lo, hi)
                tested = await self._tests[lo, hi]
                if tested.at is None:
                    leaves[lo, hi] = (tested.clip, tested.partials)
                    continue
                changes += 1
                todo += [(lo, lo + tested.at), (lo + tested.at, hi)]
        finally:
            for task in self._tests.values():  # tests the walk did not come to: not needed
                task.cancel()
            await asyncio.gather(*self._tests.values(), return_exceptions=True)
        missing = [key for key, (_, partials) in leaves.items() if partials is None]
        made = await asyncio.gather(
            *(self.worker.embed_utterance(self.session_id, leaves[key][0]) for key in missing)
        )
        embedded = dict(zip(missing, made, strict=True))
        return {
            key: (clip, partials if partials is not None else embedded[key])
            for key, (clip, partials) in sorted(leaves.items())
        }

    def _start(self, lo: int, hi: int) -> None:
        self._tests[lo, hi] = asyncio.create_task(self._test(lo, hi))

    def _clip(self, lo: int, hi: int) -> np.ndarray:
        """The audio of words ``lo:hi`` as a part: from the utterance's start or end where it is at one."""
        a = int(max(0.0, self.spans[lo].start_s) * MODEL_RATE) if lo else 0
        b = int(self.spans[hi - 1].end_s * MODEL_RATE) if hi < len(self.spans) else self.audio.size
        return self.audio[a : max(b, a + int(MIN_PART_S * MODEL_RATE))]

    async def _test(self, lo: int, hi: int) -> _Tested:
        n = len(self.spans)
        clip = self._clip(lo, hi)
        part_audio, part_spans = part_of(self.audio, self.spans, lo, hi)
        boundaries = change_candidates(part_audio.size / MODEL_RATE, part_spans) if hi - lo >= 2 else []
        # a split stretch's own partials are wasted: made with the test only where a split is unlikely
        # (the whole final, as the caller judges) or impossible (nothing to test)
        with_clip = not boundaries or (self.embed_whole and (lo, hi) == (0, n))

        kind = self.worker.kind

        def windows() -> np.ndarray:  # on the worker thread: the features are its work, not the loop's
            made = [change_windows(part_audio, part_spans, boundaries, kind)]
            return np.concatenate([*made, kind.windows(clip)]) if with_clip else made[0]

        n_windows = 2 * len(boundaries) + (len(partial_starts(clip.size)) if with_clip else 0)
        rows = await self.worker.embed_prepared(self.session_id, windows, n_windows)
        at = pick_change(boundaries, rows[: 2 * len(boundaries)], self.worker.kind.change_threshold)
        if at is not None:
            self._found += 1
            # both sides tested now, up to the cap; a side the walk comes to past it is tested then
            if self._found < MAX_CHANGES:
                self._start(lo, lo + at)
                self._start(lo + at, hi)
        return _Tested(at, clip, rows[2 * len(boundaries) :] if with_clip else None)
