"""What every bench session says, and when the sessions start.

The realistic corpus (:mod:`streamer_bench.corpus`) is the default input. One condition's stream (clean
speech at the normal rate unless asked otherwise) is cut at every sentence's start into pieces: a sentence
and the pause after it (0.3-2 s, drawn from the corpus's seed; 1 s after the last). Session ``i`` of ``n``
speaks ``per_session`` pieces in a row starting at sentence ``i * S // n`` of ``S``, after the stream's
lead-in, so no two sessions speak the same rotation while ``n <= S``, and the sessions drift apart as
their sentences differ in length. Without piper, the committed fixture pieces (tests/fixtures/corpus)
stand in and the report says so. The espeak clips of the first bench remain as ``--input espeak``.

Starts: ``sync`` starts every session's audio within :data:`SYNC_WINDOW_S` (the worst case for the
batcher and for admission); ``spread`` starts them evenly over ``spread_s`` seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamer.client import read_wav
from streamer_bench import corpus as corpus_mod
from streamer_bench.corpus import Corpus, CorpusParams
from streamer_bench.corpus_text import SENTENCES

SYNC_WINDOW_S = 0.1
STARTS = ("sync", "spread")
# in a source checkout: what the tests commit, used when piper is not installed
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "corpus"
ESPEAK_DATA = Path(__file__).resolve().parent / "data"
ESPEAK_SPEECH = ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav")
ESPEAK_GAP_S = 1.5
LEAD_S = 0.5
MIN_TAIL_S = 1.0  # silence after a script's last sentence, so it ends by a pause, not by session.close
FRAME_MS = 100  # a script is sent in frames this long, and holds a whole number of them


class InputError(ValueError):
    """The bench's input cannot be had (a missing corpus, an unknown condition): says what to do."""


@dataclass(frozen=True)
class Line:
    """One sentence of a script: where it lies in the session's audio (ms) and its text."""

    start_ms: float
    end_ms: float
    text: str


@dataclass(frozen=True)
class Script:
    """One session's audio (PCM16 mono at ``rate``) and the sentences in it."""

    pcm: bytes
    rate: int
    lines: tuple[Line, ...]

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.rate


@dataclass(frozen=True)
class Piece:
    """A sentence followed by the pause after it: ``audio[:speech]`` is the sentence."""

    audio: np.ndarray  # int16
    speech: int  # samples
    text: str


@dataclass(frozen=True)
class Source:
    """The pieces every session's script is cut from, and what the report says about them."""

    rate: int
    lead: np.ndarray  # int16, what a session sends before its first sentence
    pieces: tuple[Piece, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def script(self, index: int, sessions: int, per_session: int) -> Script:
        """Session ``index`` of ``sessions``: ``per_session`` sentences from its own place in the rotation."""
        if not 0 <= index < sessions or per_session < 1:
            raise ValueError(f"no session {index} of {sessions} with {per_session} sentences")
        first = index * len(self.pieces) // sessions
        chosen = [self.pieces[(first + k) % len(self.pieces)] for k in range(per_session)]
        parts, lines, pos = [self.lead], [], self.lead.size
        for piece in chosen:
            lines.append(Line(_ms(pos, self.rate), _ms(pos + piece.speech, self.rate), piece.text))
            parts.append(piece.audio)
            pos += piece.audio.size
        pause = chosen[-1].audio.size - chosen[-1].speech
        missing = max(0, int(MIN_TAIL_S * self.rate) - pause)
        # whole frames: the protocol takes 10 ms to 1 s per frame, so a few-sample remainder is refused
        frame = self.rate * FRAME_MS // 1000
        missing += -(pos + missing) % frame
        if missing > 0:
            parts.append(np.resize(self.lead, missing) if self.lead.size else np.zeros(missing, "<i2"))
        return Script(np.concatenate(parts).astype("<i2").tobytes(), self.rate, tuple(lines))


def _ms(samples: int, rate: int) -> float:
    return samples * 1000 / rate


def start_offsets(sessions: int, starts: str, spread_s: float) -> list[float]:
    """When each session's audio starts, in seconds after the first: within 0.1 s, or evenly spread."""
    if starts not in STARTS:
        raise ValueError(f"starts must be one of {', '.join(STARTS)}, not {starts!r}")
    if sessions < 1 or spread_s < 0:
        raise ValueError("need at least one session and a spread of 0 s or more")
    window = SYNC_WINDOW_S if starts == "sync" else spread_s
    if sessions == 1:
        return [0.0]
    # sync: strictly inside the window; spread: first at 0, last at spread_s
    last = sessions if starts == "sync" else sessions - 1
    return [window * i / last for i in range(sessions)]


# --- the realistic corpus


def corpus_source(condition: str = "clean", sentences: int | None = None, root: Path | None = None) -> Source:
    """Pieces of one condition of the corpus: ``root``, else the cache (piper), else the fixtures."""
    info: dict[str, Any] = {"kind": "corpus", "condition": condition}
    if root is not None:
        corpus = _load(root)
        info["source"] = str(root)
    else:
        try:
            chosen = SENTENCES[:sentences] if sentences else SENTENCES
            corpus = corpus_mod.ensure(CorpusParams(sentences=chosen))
            info["source"] = "generated with piper (cached)"
        except ModuleNotFoundError as e:
            if not (FIXTURES / "manifest.json").is_file():
                raise InputError(
                    f"the corpus needs piper ({e.name} is missing: pip install 'streamer[bench]'), "
                    f"and the committed fixtures are not at {FIXTURES}; or pass --corpus DIR"
                ) from e
            corpus = _load(FIXTURES)
            info["source"] = "tests/fixtures/corpus (committed pieces)"
            info["note"] = f"piper is not installed ({e.name} missing): the few committed fixture sentences"
    info["corpus"] = corpus.key
    return pieces_of(corpus, condition, info)


def kind_source(kind: str, root: Path | None = None) -> Source:
    """Pieces of one of :data:`~streamer_bench.speech_kinds.KINDS`: ``root``, else the cache (piper)."""
    from streamer_bench import speech_kinds

    info: dict[str, Any] = {"kind": kind}
    if root is not None:
        corpus = _load(root)
        info["source"] = str(root)
    else:
        try:
            corpus = speech_kinds.ensure(speech_kinds.params_for(kind))
        except ModuleNotFoundError as e:
            raise InputError(
                f"--input {kind} needs piper ({e.name} is missing: pip install 'streamer[bench]'), "
                "or pass --corpus DIR with a generated one (python -m streamer_bench.speech_kinds)"
            ) from e
        info["source"] = "generated with piper (cached)"
    info["corpus"] = corpus.key
    return pieces_of(corpus, kind, info)


def _load(root: Path) -> Corpus:
    try:
        return corpus_mod.load(root)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"no readable corpus at {root}: {e}") from e


def pieces_of(corpus: Corpus, condition: str, info: dict[str, Any]) -> Source:
    """Cut one speech item of ``corpus`` at its sentences' starts."""
    items = {it.id: it for it in corpus.items if it.sentences}
    if condition not in items:
        raise InputError(f"no condition {condition!r} in the corpus; it has: {', '.join(sorted(items))}")
    item = items[condition]
    audio = corpus.pcm(item)
    starts = [s.start_ms * item.sample_rate // 1000 for s in item.sentences]
    ends = [s.end_ms * item.sample_rate // 1000 for s in item.sentences]
    bounds = [*starts[1:], audio.size]
    pieces = tuple(
        Piece(audio[a:b].copy(), e - a, s.text)
        for a, e, b, s in zip(starts, ends, bounds, item.sentences, strict=True)
    )
    info = {**info, "sentences": len(pieces), "sample_rate": item.sample_rate}
    return Source(item.sample_rate, audio[: starts[0]].copy(), pieces, info)


# --- the espeak clips of the first bench


def espeak_source(data: Path = ESPEAK_DATA) -> Source:
    """The synthetic espeak utterances (no pauses inside sentences), 1.5 s apart."""
    refs = json.loads((data / "transcripts.json").read_text())
    pieces = []
    for name in ESPEAK_SPEECH:
        pcm, rate = read_wav(str(data / name))
        if rate != 16000:
            raise InputError(f"{name}: the bench expects 16 kHz audio, not {rate} Hz")
        speech = np.frombuffer(pcm, dtype="<i2")
        gap = np.zeros(int(ESPEAK_GAP_S * rate), dtype="<i2")
        pieces.append(Piece(np.concatenate([speech, gap]), speech.size, refs[name]["text"]))
    lead = np.zeros(int(LEAD_S * 16000), dtype="<i2")
    info = {"kind": "espeak", "source": "streamer_bench/data", "sentences": len(pieces)}
    return Source(16000, lead, tuple(pieces), info)
