"""Speaker labels on multi-voice speech: how many words get the right speaker, and what the encoder costs.

    streamer bench --speakers [--dialogues DIR] [--out FILE]
    python -m streamer_bench.speakers_bench [--dialogues DIR] [--out FILE]

Over the dialogues of :mod:`streamer_bench.dialogue` (generated and cached when no directory is given),
each item is cut the way a VAD cuts it: its ground-truth turns, their edges moved by up to 60 ms, are
merged whenever the next starts less than ``--merge-gap`` (0.45 s, about when the segmenter releases
an utterance) after the last ends or overlaps it, so quick replies and interruptions land inside one
utterance as they do live. Each utterance goes through what a diarized session does: the change-point
helper on its words (ground-truth timings), a split at each change found, one embedding per part, and
the session's online clustering. A word is right when its part's label maps to its turn's speaker under
the best one-to-one mapping of labels to speakers (unmapped labels count wrong). Reported per kind
(two and three speakers, reading, commands) and for the encoder: CPU seconds per second of audio.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.pipeline.speakers import GE2E, SpeakerClusters, VoiceKind, WordSpan, find_changes
from streamer.pipeline.speakers_campplus import CAMPLUS
from streamer.pipeline.speakers_encoder import RATE
from streamer.pipeline.speakers_worker import EmbedWindows, load_voice_encoder
from streamer_bench import dialogue
from streamer_bench.report import machine
from streamer_bench.speaker_turns import best_mapping_accuracy


@dataclass(frozen=True)
class Utterance:
    start: int  # samples
    end: int
    words: list[tuple[int, dialogue.Word]]  # (true speaker, word), in time order


def segment(item: dialogue.Item, merge_gap_s: float, rng: np.random.Generator) -> list[Utterance]:
    """The item's turns as a VAD would deliver them: jittered edges, short gaps merged."""
    spans = []
    for turn in item.turns:
        a = max(0, turn.start_ms + int(rng.integers(-60, 61)))
        b = turn.end_ms + int(rng.integers(-60, 61))
        spans.append((a, max(a + 50, b), turn))
    spans.sort(key=lambda s: s[0])
    out: list[tuple[int, int, list[tuple[int, dialogue.Word]]]] = []
    for a, b, turn in spans:
        words = [(turn.speaker, w) for w in turn.words]
        if out and a - out[-1][1] < merge_gap_s * 1000:
            prev = out[-1]
            out[-1] = (prev[0], max(prev[1], b), sorted(prev[2] + words, key=lambda x: x[1].start_ms))
        else:
            out.append((a, b, words))
    return [Utterance(a * RATE // 1000, b * RATE // 1000, words) for a, b, words in out]


def label_words(
    encoder: tuple[EmbedWindows, VoiceKind],
    audio: np.ndarray,
    utterances: list[Utterance],
    clusters: SpeakerClusters,
    split: bool,
    change_threshold: float,
) -> tuple[list[tuple[int, int]], float, float]:
    """(true, predicted) per word; the encoder's CPU seconds and the audio seconds it embedded."""
    pairs: list[tuple[int, int]] = []
    cpu = 0.0
    embedded = 0.0
    embed_windows, kind = encoder

    def embed(windows: np.ndarray) -> np.ndarray:
        nonlocal cpu
        t = time.process_time()
        out = embed_windows(windows)
        cpu += time.process_time() - t
        return out

    for utt in utterances:
        clip = audio[utt.start : utt.end]
        base = utt.start / RATE
        spans = [WordSpan(w.start_ms / 1000 - base, w.end_ms / 1000 - base) for _, w in utt.words]
        cuts = (
            find_changes(embed, clip, spans, threshold=change_threshold, kind=kind)
            if split and len(spans) > 1
            else []
        )
        bounds = [0, *cuts, len(spans)]
        for lo, hi in itertools.pairwise(bounds):
            a = int(max(0.0, spans[lo].start_s) * RATE) if lo else 0
            b = int(spans[hi - 1].end_s * RATE) if hi < len(spans) else clip.size
            part = clip[a : max(b, a + RATE // 10)]
            t = time.process_time()
            vec = embed_windows(kind.windows(part)).mean(axis=0)
            cpu += time.process_time() - t
            embedded += part.size / RATE
            label = clusters.assign(vec, weight=part.size / RATE)
            pairs += [(speaker, label) for speaker, _ in utt.words[lo:hi]]
    return pairs, cpu, embedded


def run(
    speech: dialogue.Dialogues,
    threshold: float | None,
    change_threshold: float | None,
    merge_gap_s: float,
    seed: int,
    merge_threshold: float | str | None = "default",
    encoder_name: str = GE2E.name,
) -> dict[str, Any]:
    """Every item labelled with and without splits; thresholds None (merge: "default"): the encoder's."""
    encoder = load_voice_encoder(encoder_name)
    kind = encoder[1]
    threshold = kind.threshold if threshold is None else threshold
    change_threshold = kind.change_threshold if change_threshold is None else change_threshold
    merge = kind.merge_threshold if merge_threshold == "default" else merge_threshold
    assert merge is None or isinstance(merge, float)
    rows: list[dict[str, Any]] = []
    for item in speech.items:
        audio = speech.audio(item)
        utterances = segment(item, merge_gap_s, np.random.default_rng([seed, len(rows)]))
        row: dict[str, Any] = {"item": item.id, "kind": item.kind, "speakers": len(item.voices)}
        row["utterances"] = len(utterances)
        row["merged_turns"] = len(item.turns) - len(utterances)
        for split in (False, True):
            clusters = SpeakerClusters(threshold, merge_threshold=merge, dim=kind.dim)
            pairs, cpu, _ = label_words(encoder, audio, utterances, clusters, split, change_threshold)
            name = "split" if split else "nosplit"
            row[f"{name}_accuracy"] = best_mapping_accuracy(pairs)
            row[f"{name}_labels"] = clusters.count
            row[f"{name}_cpu_per_audio_s"] = cpu / (item.duration_ms / 1000)
            row[f"{name}_cpu_s"] = cpu
        row["words"] = len(pairs)
        row["audio_s"] = item.duration_ms / 1000
        rows.append(row)
    return {
        "machine": machine(),
        "encoder": kind.name,
        "threshold": threshold,
        "change_threshold": change_threshold,
        "merge_threshold": merge,
        "merge_gap_s": merge_gap_s,
        "rows": rows,
    }


def summary(result: dict[str, Any]) -> str:
    lines = [
        "| item | speakers | utterances (turns merged) | words right, no split | with splits | labels "
        "| encoder CPU s / audio s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['item']} | {r['speakers']} | {r['utterances']} ({r['merged_turns']}) | "
            f"{r['nosplit_accuracy']:.1%} | {r['split_accuracy']:.1%} | {r['split_labels']} | "
            f"{r['split_cpu_per_audio_s']:.3f} |"
        )
    lines += ["", "| kind | items | words | words right, no split | with splits | encoder CPU s / audio s |"]
    lines.append("|---|---|---|---|---|---|")
    for kind, rows in pooled(result["rows"]).items():
        words = sum(r["words"] for r in rows)
        right = {k: sum(r[f"{k}_accuracy"] * r["words"] for r in rows) / words for k in ("nosplit", "split")}
        cpu = sum(r["split_cpu_s"] for r in rows) / sum(r["audio_s"] for r in rows)
        lines.append(
            f"| {kind} | {len(rows)} | {words} | {right['nosplit']:.1%} | {right['split']:.1%} | {cpu:.3f} |"
        )
    return "\n".join(lines)


def pooled(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows by kind of item (two, three, reading, commands), in that order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: ("two", "three", "reading", "commands").index(r["kind"])):
        out.setdefault(r["kind"], []).append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer_bench.speakers_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dialogues", type=Path, help="a generated dialogue directory (default: the cache)")
    parser.add_argument(
        "--heldout", action="store_true", help="the held-out dialogues (no threshold was chosen on them)"
    )
    parser.add_argument(
        "--heldout-trios", action="store_true", help="the four further held-out three-speaker dialogues"
    )
    parser.add_argument(
        "--server",
        action="store_true",
        help="instead: through a real server (streamer_bench.diarize_cpu: its own options)",
    )
    parser.add_argument("--encoder", choices=(GE2E.name, CAMPLUS.name), default=GE2E.name)
    parser.add_argument("--threshold", type=float, help="default: the encoder's")
    parser.add_argument("--change-threshold", type=float, help="default: the encoder's")
    parser.add_argument(
        "--merge-threshold",
        type=lambda v: None if v == "off" else v if v == "default" else float(v),
        default="default",
        help="merge two speakers whose centroids are this alike ('off': never; default: the encoder's)",
    )
    parser.add_argument("--merge-gap", type=float, default=0.45)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    argv = sys.argv[1:] if argv is None else argv
    if "--server" in argv:  # the real-server bench has options of its own
        from streamer_bench import diarize_cpu

        return diarize_cpu.main([a for a in argv if a != "--server"])
    args = parser.parse_args(argv)
    params = dialogue.SETS[
        "heldout-trios" if args.heldout_trios else "heldout" if args.heldout else "tuning"
    ]()
    speech = dialogue.load(args.dialogues) if args.dialogues else dialogue.ensure(params)
    result = run(
        speech,
        args.threshold,
        args.change_threshold,
        args.merge_gap,
        args.seed,
        args.merge_threshold,
        args.encoder,
    )
    print(summary(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
