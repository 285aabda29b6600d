"""Three more kinds of input that real use has: continuous reading, quick dialogue, short commands.

    python -m streamer_bench.speech_kinds continuous|dialogue|commands [--out DIR]

- **continuous**: the corpus's 50 sentences read as one text, several minutes long, with no pause longer
  than :data:`CONTINUOUS_GAP_S` between sentences: the only pauses are those a reader makes at commas
  and full stops. A segmenter waiting for a long pause never gets one.
- **dialogue**: a conversation of short turns (:data:`~streamer_bench.corpus_text.DIALOGUE`) with gaps
  under 0.5 s; one voice, the two speakers told apart by their pace (normal and fast).
- **commands**: short commands (:data:`~streamer_bench.corpus_text.COMMANDS`), each 1-2 s long (a clip
  outside that range is synthesised again at the pace that brings it in), with the corpus's
  conversational gaps (0.3-2 s) between them.

Each kind is one stream in a corpus directory of its own (``<kind>.wav`` and ``manifest.json``, read by
:func:`streamer_bench.corpus.load`), generated with piper like the realistic corpus, seeded, and cached
under a hash of everything that shapes it. :func:`layout` is the pure part, tested without piper.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from streamer_bench import corpus as corpus_mod
from streamer_bench.corpus import RATE, Corpus, Item, Sentence
from streamer_bench.corpus_text import COMMANDS, DIALOGUE, SENTENCES, content_words

VERSION = 1  # bump whenever the output changes for the same parameters
KINDS = ("continuous", "dialogue", "commands")
CONTINUOUS_GAP_S = (0.15, 0.5)
DIALOGUE_GAP_S = (0.1, 0.45)
COMMAND_GAP_S = (0.3, 2.0)
COMMAND_S = (1.0, 2.0)
PACES = {1.0: "normal", 0.8: "fast"}  # piper's length_scale -> the corpus's speed names


@dataclass(frozen=True)
class KindParams:
    """Everything that shapes one kind's stream; its hash names the cache entry."""

    kind: str
    texts: tuple[str, ...]
    gap_s: tuple[float, float]
    paces: tuple[float, ...] = (1.0,)  # length_scale per line, cycled (dialogue: one per speaker)
    clip_s: tuple[float, float] | None = None  # each clip brought into this duration range
    lead_s: float = 0.5
    tail_s: float = 1.0
    seed: int = 20261207

    def key(self) -> str:
        voice = corpus_mod._voice_id()
        blob = json.dumps({"version": VERSION, "voice": voice, **asdict(self)}, sort_keys=True)
        return f"{self.kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def params_for(kind: str, texts: Sequence[str] | None = None) -> KindParams:
    """The parameters of ``kind`` (its own texts unless ``texts`` is given: tests use a few)."""
    if kind == "continuous":
        return KindParams(kind, tuple(texts or SENTENCES), CONTINUOUS_GAP_S)
    if kind == "dialogue":
        return KindParams(kind, tuple(texts or DIALOGUE), DIALOGUE_GAP_S, paces=(1.0, 0.8))
    if kind == "commands":
        return KindParams(kind, tuple(texts or COMMANDS), COMMAND_GAP_S, clip_s=COMMAND_S)
    raise ValueError(f"unknown input kind {kind!r}; one of {', '.join(KINDS)}")


def synthesize(params: KindParams) -> list[np.ndarray]:
    """One clip per text at its pace, float32 at 16 kHz; a clip outside ``clip_s`` is made again at the
    pace that brings it inside (twice at most: piper's durations vary a little with the pace)."""
    clips = []
    for k, text in enumerate(params.texts):
        pace = params.paces[k % len(params.paces)]
        clip = _one(text, params.seed, pace)
        for _ in range(2):
            if params.clip_s is None:
                break
            low, high = params.clip_s
            seconds = clip.size / RATE
            if low <= seconds <= high:
                break
            target = low + 0.1 if seconds < low else high - 0.1
            pace *= target / seconds
            clip = _one(text, params.seed, pace)
        clips.append(clip)
    return clips


def _one(text: str, seed: int, pace: float) -> np.ndarray:
    return corpus_mod.synthesize([text], seed, {"pace": pace})["pace"][0]


def layout(
    params: KindParams, clips: Sequence[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The clips in a row after ``lead_s``, gaps drawn from ``gap_s``, ``tail_s`` after the last one;
    returns the stream and each clip's span in samples."""
    parts = [np.zeros(int(params.lead_s * RATE), dtype=np.float32)]
    spans: list[tuple[int, int]] = []
    pos = parts[0].size
    for k, clip in enumerate(clips):
        spans.append((pos, pos + clip.size))
        gap = params.tail_s if k == len(clips) - 1 else float(rng.uniform(*params.gap_s))
        parts += [clip.astype(np.float32), np.zeros(int(gap * RATE), dtype=np.float32)]
        pos += clip.size + parts[-1].size
    return np.concatenate(parts), spans


def build(params: KindParams, out: Path, clips: Sequence[np.ndarray] | None = None) -> Corpus:
    """Write ``<kind>.wav`` and ``manifest.json`` into ``out`` (synthesising the clips unless given)."""
    out.mkdir(parents=True, exist_ok=True)
    clips = list(clips) if clips is not None else synthesize(params)
    rng = np.random.default_rng([params.seed, zlib.crc32(params.kind.encode())])
    stream, spans = layout(params, clips, rng)
    sentences = [
        Sentence(
            id=f"s{k:02d}",
            text=text,
            content_words=content_words(text),
            start_ms=a * 1000 // RATE,
            end_ms=b * 1000 // RATE,
            speed=PACES.get(params.paces[k % len(params.paces)], "normal"),
        )
        for k, (text, (a, b)) in enumerate(zip(params.texts, spans, strict=True))
    ]
    item = Item(params.kind, params.kind, f"{params.kind}.wav", RATE, len(stream) * 1000 // RATE, sentences)
    corpus_mod._write(out, item, stream)
    manifest = {"version": VERSION, "key": params.key(), "params": asdict(params), "items": [asdict(item)]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return corpus_mod.load(out)


def ensure(params: KindParams, cache_dir: Path | None = None) -> Corpus:
    """The kind's corpus from the cache, generated into it first when it is not there (needs piper)."""
    return corpus_mod.cached(params.key(), lambda out: build(params, out), cache_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer_bench.speech_kinds", description=__doc__.split("\n")[0]
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--out", type=Path, help="write it here (default: the cache)")
    args = parser.parse_args(argv)
    params = params_for(args.kind)
    corpus = build(params, args.out) if args.out else ensure(params)
    item = corpus.items[0]
    print(f"{item.id}: {item.duration_ms / 1000:.1f} s, {len(item.sentences)} lines, in {corpus.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
