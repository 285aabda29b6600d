"""Two-language test speech: English and Japanese sentences taking turns in one recording, with ground truth.

    python -m streamer_bench.bilingual                   # the benchmark set, into the cache
    python -m streamer_bench.bilingual --fixtures DIR    # the short clip the tests commit

English sentences are read by piper's ``joe``; Japanese ones by Kokoro-82M's Japanese voices ``jf_alpha``
and ``jm_kumo`` (the voices of :mod:`streamer_bench.dialogue`), phonemized by espeak-ng's ``ja`` voice.
espeak-ng reads kana but not kanji (it spells those out as "Chinese letter"), so the Japanese sentences
are written in kana. The languages alternate, separated by gaps long enough for the VAD to cut
(1.0-1.6 s), so each utterance is one sentence in one language. Ground truth per utterance: language,
voice, text and span (``manifest.json``). Cached under a hash of what shapes it, like the dialogues.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from streamer_bench.corpus import cache_root, in_cache, read_pcm16
from streamer_bench.corpus_text import SENTENCES
from streamer_bench.dialogue import RATE, Voices

VERSION = 1

JAPANESE: tuple[str, ...] = (
    "きょうは とても いい てんき ですね。",
    "えきまで あるいて どのくらい かかりますか。",
    "あしたの かいぎは ごぜん じゅうじから です。",
    "この りょうりは とても おいしいです。",
    "すみません、もう いちど いって ください。",
    "わたしは まいあさ コーヒーを のみます。",
    "でんしゃが おくれて、かいしゃに ちこく しました。",
    "しゅうまつは かぞくと やまへ いきます。",
    "この ほんは としょかんで かりました。",
    "さむいので まどを しめて ください。",
    "かれは にほんごを じょうずに はなします。",
    "ひこうきは さんじに とうちゃく します。",
)


@dataclass(frozen=True)
class BilingualParams:
    """Everything that shapes the speech; its hash names the cache entry."""

    pairs: int = len(JAPANESE)  # utterances per language; they alternate, English first
    japanese_voices: tuple[str, ...] = ("alpha", "kumo")
    gap_s: tuple[float, float] = (1.0, 1.6)
    lead_s: float = 0.5
    tail_s: float = 1.0
    seed: int = 20261207

    def key(self) -> str:
        blob = json.dumps({"version": VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Utterance:
    language: str  # ISO 639-1
    voice: str
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Bilingual:
    root: Path
    key: str
    utterances: list[Utterance]

    def audio(self) -> np.ndarray:
        """The recording's samples, float32 at 16 kHz."""
        return read_pcm16(self.root / "bilingual.wav", RATE).astype(np.float32) / 32768


def load(root: Path) -> Bilingual:
    """Read generated speech (its ``manifest.json``) from ``root``; no TTS needed."""
    data = json.loads((root / "manifest.json").read_text())
    return Bilingual(root=root, key=data["key"], utterances=[Utterance(**u) for u in data["utterances"]])


def default_cache_dir() -> Path:
    return cache_root("bilingual")


def ensure(params: BilingualParams, cache_dir: Path | None = None) -> Bilingual:
    """The speech for ``params``: from the cache when it is there, else generated into it first."""
    return in_cache((cache_dir or default_cache_dir()) / params.key(), lambda out: build(params, out), load)


def build(params: BilingualParams, out: Path) -> Bilingual:
    """Synthesise the recording into ``out`` (``bilingual.wav`` and ``manifest.json``)."""
    if not 1 <= params.pairs <= min(len(JAPANESE), len(SENTENCES)):
        raise ValueError(f"pairs must be 1..{min(len(JAPANESE), len(SENTENCES))}")
    rng = np.random.default_rng(params.seed)
    voices = Voices(params.seed)
    pieces: list[np.ndarray] = [np.zeros(int(params.lead_s * RATE), dtype=np.float32)]
    at = pieces[0].size
    utterances: list[Utterance] = []
    for i in range(params.pairs):
        jvoice = params.japanese_voices[i % len(params.japanese_voices)]
        for language, voice, text in (("en", "joe", SENTENCES[i]), ("ja", jvoice, JAPANESE[i])):
            clip = voices.speak(voice, text, phonemes="en-us" if language == "en" else "ja")
            utterances.append(
                Utterance(language, voice, text, at * 1000 // RATE, (at + clip.size) * 1000 // RATE)
            )
            gap = np.zeros(int(rng.uniform(*params.gap_s) * RATE), dtype=np.float32)
            pieces += [clip, gap]
            at += clip.size + gap.size
    pieces.append(np.zeros(int(params.tail_s * RATE), dtype=np.float32))
    samples = np.concatenate(pieces)
    out.mkdir(parents=True, exist_ok=True)
    with wave.open(str(out / "bilingual.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    manifest = {"key": params.key(), "params": asdict(params), "utterances": [asdict(u) for u in utterances]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return load(out)


def fixture_params() -> BilingualParams:
    """The short clip committed under tests/fixtures/bilingual: two sentences in each language."""
    return BilingualParams(pairs=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer_bench.bilingual", description=__doc__.split("\n")[0]
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="write everything here (default: the cache)")
    where.add_argument("--fixtures", type=Path, help="write the short test clip here")
    args = parser.parse_args(argv)
    params = fixture_params() if args.fixtures else BilingualParams()
    target = args.fixtures or args.out
    speech = build(params, target) if target else ensure(params)
    for u in speech.utterances:
        print(f"{u.language} {u.voice:6s} {u.start_ms / 1000:6.1f}-{u.end_ms / 1000:6.1f} s  {u.text}")
    print(f"bilingual {speech.key} in {speech.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
