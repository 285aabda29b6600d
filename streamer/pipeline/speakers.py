"""Speaker labels for one session: online clustering of voice embeddings, and change points in an utterance.

A session embeds each stretch of speech (a final's audio, or each part of it after a split) with the
server's voice encoder (GE2E, :mod:`streamer.pipeline.speakers_encoder`, or CAM++,
:mod:`streamer.pipeline.speakers_campplus`; a :class:`VoiceKind` says what the rest needs to know of it)
and asks its :class:`SpeakerClusters` for a label: the speaker whose running centroid is most similar
(cosine) when that similarity reaches the threshold, else a new speaker, numbered 0, 1, 2, … in order
of first appearance, up to a cap (past it, the nearest speaker). Labels never change once given, so
every final and word keeps its speaker; a speaker whose centroid comes to agree with an older one's
(``merge_threshold``) is merged into it, and its later stretches get the older label.

A change of voice inside what the VAD took for one utterance (a quick reply, an interruption) is found
at a word boundary: for the few boundaries with the longest pauses (or an overlap, or a sentence end),
the speech just before and just after (up to 1.6 s each side) are embedded in one batch and compared;
the least similar boundary is a change when the similarity is under ``change_threshold``. The caller
splits the final there and labels each part. :func:`plan_changes` says which windows to embed,
:func:`pick_change` decides from their embeddings, so the embedding can run on the shared worker
(:mod:`streamer.pipeline.speakers_worker`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from streamer.pipeline.speakers_encoder import (
    EMBED_DIM,
    HOP,
    N_MELS,
    PARTIAL_FRAMES,
    RATE,
    utterance_partials,
)

# GE2E similarities on the dialogues: a voice's turns to its centroid 0.86-0.97 (a one-word reply 0.70),
# to another voice's 0.35-0.69; chosen on the dialogue bench (BENCHMARKS.md, "Speakers")
DEFAULT_THRESHOLD = 0.75
DEFAULT_CHANGE_THRESHOLD = 0.65
DEFAULT_MERGE_THRESHOLD: float | None = 0.8  # centroids this alike are one voice (chosen on the tuning set)
MIN_NEW_SPEAKER_S = 1.0  # a shorter stretch is too little voice to found a speaker on
MAX_SPEAKERS = 8
SIDE_S = PARTIAL_FRAMES * HOP / RATE  # 1.6 s: one encoder window each side of a boundary


@dataclass(frozen=True)
class VoiceKind:
    """What the rest of diarization needs to know of a voice encoder: how a stretch of audio becomes
    its partial windows (run wherever the encoder runs), their shape, the embeddings' size, and the
    similarities that mean "same speaker" in its space (each encoder's own, chosen on the tuning set)."""

    name: str
    windows: Callable[[np.ndarray], np.ndarray]  # 16 kHz float audio → (partials, *window) windows
    window: tuple[int, int]  # (frames, features) of one window
    dim: int
    threshold: float
    change_threshold: float
    merge_threshold: float | None


GE2E = VoiceKind(
    "ge2e",
    utterance_partials,
    (PARTIAL_FRAMES, N_MELS),
    EMBED_DIM,
    DEFAULT_THRESHOLD,
    DEFAULT_CHANGE_THRESHOLD,
    DEFAULT_MERGE_THRESHOLD,
)


# a session's speakers as plain data, in label order: each one's weight (seconds), summed embedding, and
# the older label it was merged into (None: its own)
SpeakerState = list[tuple[float, list[float], int | None]]


@dataclass
class _Speaker:
    total: np.ndarray  # sum of weighted unit embeddings
    weight: float
    same_as: int | None = None  # merged into this older speaker: its stretches now go there

    def centroid(self) -> np.ndarray:
        c: np.ndarray = self.total / max(float(np.linalg.norm(self.total)), 1e-12)
        return c


class SpeakerClusters:
    """One session's speakers: assign each embedded stretch to a speaker, labels in order of appearance."""

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        max_speakers: int = MAX_SPEAKERS,
        min_new_s: float = MIN_NEW_SPEAKER_S,
        merge_threshold: float | None = DEFAULT_MERGE_THRESHOLD,
        dim: int = EMBED_DIM,
    ) -> None:
        for value in (threshold, merge_threshold):
            if value is not None and not -1.0 <= value <= 1.0:
                raise ValueError(f"a threshold must be a cosine similarity (-1..1), not {value}")
        if max_speakers < 1:
            raise ValueError("max_speakers must be at least 1")
        self.threshold = threshold
        self.max_speakers = max_speakers
        self.min_new_s = min_new_s
        self.merge_threshold = merge_threshold
        self.dim = dim
        self._speakers: list[_Speaker] = []

    @classmethod
    def of(cls, kind: VoiceKind) -> SpeakerClusters:
        """A session's clusters in ``kind``'s embedding space, with its thresholds."""
        return cls(kind.threshold, merge_threshold=kind.merge_threshold, dim=kind.dim)

    @property
    def count(self) -> int:
        return len(self._speakers)

    def similarities(self, embedding: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``embedding`` to every speaker's centroid, by label."""
        e = _unit(embedding)
        own = [float(s.centroid() @ e) for s in self._speakers]
        return np.array([own[self._root(k)] for k in range(self.count)], dtype=np.float32)

    def _root(self, label: int) -> int:
        while (older := self._speakers[label].same_as) is not None:
            label = older
        return label

    def assign(self, embedding: np.ndarray, weight: float = 1.0) -> int:
        """The speaker label for one stretch (``weight``: its seconds of speech, so long ones count more).

        A new speaker needs a similarity under the threshold to every speaker, room under the cap, and
        at least ``min_new_s`` seconds of speech (a one-word reply goes to its nearest speaker).
        """
        if embedding.shape != (self.dim,) or not np.isfinite(embedding).all():
            raise ValueError(f"expected a finite ({self.dim},) embedding, got {embedding.shape}")
        e = _unit(embedding)
        sims = self.similarities(e)
        joins = sims.size and (
            sims.max() >= self.threshold or self.count >= self.max_speakers or weight < self.min_new_s
        )
        if joins:
            label = self._root(int(np.argmax(sims)))
            self._speakers[label].total += e * weight
            self._speakers[label].weight += weight
        else:
            self._speakers.append(_Speaker(e * weight, weight))
            label = self.count - 1
        return self._merge(label)

    def _merge(self, label: int) -> int:
        """Merge ``label`` with an older (or younger) speaker whose voice has become the same as its own.

        A speaker's first stretch is a noisy centroid: a voice's second turn can fall under the threshold
        and found a second speaker. Once the two centroids agree (``merge_threshold``), the younger one's
        later stretches go to the older label; labels already given stay as they were.
        """
        if self.merge_threshold is None:
            return label
        mine = self._speakers[label].centroid()
        for other in range(self.count):
            if other == label or self._speakers[other].same_as is not None:
                continue
            if float(self._speakers[other].centroid() @ mine) >= self.merge_threshold:
                old, young = min(label, other), max(label, other)
                self._speakers[old].total += self._speakers[young].total
                self._speakers[old].weight += self._speakers[young].weight
                self._speakers[young].same_as = old
                return self._merge(old)
        return label

    def state(self) -> SpeakerState:
        """Every speaker as plain data (JSON-ready), so a session resumed elsewhere keeps its labels."""
        return [
            (round(s.weight, 4), [round(float(x), 5) for x in s.total], s.same_as) for s in self._speakers
        ]

    def restore(self, state: SpeakerState) -> None:
        """Carry on from :meth:`state`'s speakers (replacing any); a malformed one raises ValueError."""
        if len(state) > self.max_speakers:
            raise ValueError(f"{len(state)} speakers, more than the cap of {self.max_speakers}")
        speakers = []
        for k, (weight, total, same_as) in enumerate(state):
            vector = np.asarray(total, dtype=np.float32)
            if vector.shape != (self.dim,) or not np.isfinite(vector).all() or not weight > 0:
                raise ValueError(f"a stored speaker must be a positive weight and a finite {self.dim}-vector")
            if same_as is not None and not 0 <= same_as < k:
                raise ValueError(f"speaker {k} is merged into {same_as}, not an older speaker")
            speakers.append(_Speaker(vector, float(weight), same_as))
        self._speakers = speakers


def _unit(x: np.ndarray) -> np.ndarray:
    u: np.ndarray = (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float32)
    return u


# --- change points inside one utterance


@dataclass(frozen=True)
class WordSpan:
    """A word's timing inside the utterance's audio, in seconds from its first sample; ``sentence_end``:
    the word ends a sentence (its text ends with ``.``, ``?`` or ``!``)."""

    start_s: float
    end_s: float
    sentence_end: bool = False


@dataclass(frozen=True)
class ChangePlan:
    """The candidate boundaries (word indices: a change before that word) and the windows to embed.

    ``windows`` is ``(2 * len(boundaries), *kind.window)``: the speech before and after each boundary.
    """

    boundaries: list[int]
    windows: np.ndarray


def change_candidates(
    duration_s: float,
    words: Sequence[WordSpan],
    *,
    min_side_s: float = 0.3,
    min_gap_s: float = 0.1,
    max_candidates: int = 6,
) -> list[int]:
    """Which word boundaries to test for a change of voice in ``duration_s`` of speech.

    A boundary needs ``min_side_s`` of speech on each side and either a pause of ``min_gap_s`` between
    the words (words that overlap count too) or the end of a sentence: Whisper's word timings often run
    one turn's last word into the next turn's first with no pause, but the text still ends the sentence
    there. Of those, the ``max_candidates`` with the longest pauses (a sentence end counting as at least
    ``min_gap_s``) are tested, so the cost stays bounded however long the utterance.
    """
    found: list[tuple[float, int]] = []
    for k in range(1, len(words)):
        cut = (words[k - 1].end_s + words[k].start_s) / 2
        gap = words[k].start_s - words[k - 1].end_s
        inside = words[0].start_s + min_side_s <= cut <= min(words[-1].end_s, duration_s) - min_side_s
        pause = max(abs(gap), min_gap_s) if words[k - 1].sentence_end else abs(gap)
        if inside and pause >= min_gap_s:
            found.append((pause, k))
    return sorted(k for _, k in sorted(found, key=lambda g: (-g[0], g[1]))[:max_candidates])


def change_windows(
    audio: np.ndarray, words: Sequence[WordSpan], boundaries: Sequence[int], kind: VoiceKind = GE2E
) -> np.ndarray:
    """The ``(2 * len(boundaries), *kind.window)`` windows of the speech before and after each boundary."""
    windows = []
    for k in boundaries:
        cut = (words[k - 1].end_s + words[k].start_s) / 2
        before = audio[max(0, int((cut - SIDE_S) * RATE), int(words[0].start_s * RATE)) : int(cut * RATE)]
        after = audio[int(cut * RATE) : min(int((cut + SIDE_S) * RATE), int(words[-1].end_s * RATE) + 1)]
        windows += [kind.windows(before)[0], kind.windows(after)[0]]
    return np.stack(windows) if windows else np.zeros((0, *kind.window), np.float32)


def plan_changes(audio: np.ndarray, words: Sequence[WordSpan], kind: VoiceKind = GE2E) -> ChangePlan:
    """:func:`change_candidates` in one utterance (16 kHz float audio) and their windows to embed."""
    chosen = change_candidates(audio.size / RATE, words)
    return ChangePlan(chosen, change_windows(audio, words, chosen, kind))


def pick_change(
    boundaries: Sequence[int], embeddings: np.ndarray, threshold: float = DEFAULT_CHANGE_THRESHOLD
) -> int | None:
    """The word index where a new voice starts (the least similar boundary under ``threshold``), or None.

    ``embeddings``: the windows' of :func:`change_windows`, before and after each boundary in turn.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] != 2 * len(boundaries):
        raise ValueError(f"expected {2 * len(boundaries)} embeddings, got {embeddings.shape}")
    if not boundaries:
        return None
    sims = np.einsum("ij,ij->i", embeddings[0::2], embeddings[1::2])
    best = int(np.argmin(sims))
    return boundaries[best] if sims[best] < threshold else None


def part_of(
    audio: np.ndarray, words: Sequence[WordSpan], lo: int, hi: int
) -> tuple[np.ndarray, list[WordSpan]]:
    """Words ``lo:hi`` of an utterance as an utterance of their own: its audio, and their timings in it."""
    base = max(0.0, words[lo].start_s)  # timings may start a little before the audio does
    part_audio = audio[int(base * RATE) : max(0, int(words[hi - 1].end_s * RATE)) + 1]
    return part_audio, [WordSpan(w.start_s - base, w.end_s - base, w.sentence_end) for w in words[lo:hi]]


def find_changes(
    embed_windows: Callable[[np.ndarray], np.ndarray],
    audio: np.ndarray,
    words: Sequence[WordSpan],
    *,
    threshold: float | None = None,
    max_changes: int = 8,
    kind: VoiceKind = GE2E,
) -> list[int]:
    """Every word index where the voice changes (sorted), testing each part again after a split; a
    change is a similarity under ``threshold`` (default: ``kind``'s)."""
    threshold = kind.change_threshold if threshold is None else threshold
    changes: list[int] = []
    parts = [(0, len(words))]
    while parts and len(changes) < max_changes:
        lo, hi = parts.pop()
        if hi - lo < 2:
            continue
        plan = plan_changes(*part_of(audio, words, lo, hi), kind)
        if not plan.boundaries:
            continue
        at = pick_change(plan.boundaries, embed_windows(plan.windows), threshold)
        if at is None:
            continue
        changes.append(lo + at)
        parts += [(lo, lo + at), (lo + at, hi)]
    return sorted(changes)
