"""The three input kinds of issue 20 item 3 (continuous reading, quick dialogue, short commands): their
structure and timing truth, the bench's way to run them, and the final-end latency continuous speech is
judged on."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.cli import main
from streamer_bench import corpus, speech_kinds
from streamer_bench.latency import end_latencies, score_session
from streamer_bench.report import capacity, latency_measure, within_bound
from streamer_bench.script import Line, kind_source
from streamer_bench.speech_kinds import KINDS, RATE, params_for
from streamer_bench.wer import words


def fake_clips(n: int, seconds: float = 1.5) -> list[np.ndarray]:
    """Stand-ins for piper's clips: noise bursts with no zero samples, so gaps are told apart exactly."""
    rng = np.random.default_rng(7)
    return [
        (rng.uniform(0.05, 0.1, int(RATE * seconds * (1 + k % 3 / 2))) * rng.choice([-1, 1])).astype(
            np.float32
        )
        for k in range(n)
    ]


def gaps_s(spans: list[tuple[int, int]]) -> list[float]:
    return [(b[0] - a[1]) / RATE for a, b in itertools.pairwise(spans)]


@pytest.mark.parametrize(
    ("kind", "low", "high"), [("continuous", 0.15, 0.5), ("dialogue", 0.1, 0.45), ("commands", 0.3, 2.0)]
)
def test_each_kind_is_laid_out_with_its_own_gaps(kind: str, low: float, high: float) -> None:
    params = params_for(kind)
    clips = fake_clips(len(params.texts))
    stream, spans = speech_kinds.layout(params, clips, np.random.default_rng(1))
    gaps = gaps_s(spans)
    assert len(gaps) == len(params.texts) - 1
    assert all(low <= g <= high for g in gaps), (min(gaps), max(gaps))
    # what lies between the spans is silence, and the spans hold the clips exactly
    for (a, b), clip in zip(spans, clips, strict=True):
        assert np.array_equal(stream[a:b], clip)
    silent = np.ones(stream.size, dtype=bool)
    for a, b in spans:
        silent[a:b] = False
    assert not stream[silent].any()
    assert spans[0][0] == int(params.lead_s * RATE) and stream.size - spans[-1][1] == int(
        params.tail_s * RATE
    )


def test_the_kinds_have_what_real_use_has() -> None:
    continuous, dialogue, commands = (params_for(k) for k in KINDS)
    assert len(continuous.texts) >= 40  # read at 2-5 s a sentence: several minutes
    assert max(continuous.gap_s) <= 0.5 and max(dialogue.gap_s) < 0.5
    assert dialogue.paces == (1.0, 0.8)  # two speakers, told apart by their pace
    assert commands.clip_s == (1.0, 2.0)
    # scored by words, so no numbers: the model may write "ten" or "10"
    numbers = {"second", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"}
    numbers |= {"twelve", "twenty", "thirty", "hundred"}
    for params in (dialogue, commands):
        assert not [t for t in params.texts if numbers & set(words(t))]
    with pytest.raises(ValueError, match="unknown input kind"):
        params_for("monologue")


def test_a_built_kind_is_a_corpus_the_bench_cuts_into_sessions(tmp_path: Path) -> None:
    params = params_for("continuous", texts=[f"sentence number {k}, with a comma" for k in range(6)])
    built = speech_kinds.build(params, tmp_path, fake_clips(6))
    item = built.item("continuous")
    assert [s.text for s in item.sentences] == list(params.texts)
    assert built.pcm(item).size * 1000 // RATE == item.duration_ms
    # the same seed lays the same stream out; the manifest's times are the stream's
    again = speech_kinds.build(params, tmp_path / "again", fake_clips(6))
    assert [(s.start_ms, s.end_ms) for s in again.items[0].sentences] == [
        (s.start_ms, s.end_ms) for s in item.sentences
    ]
    source = kind_source("continuous", tmp_path)
    assert source.info["kind"] == "continuous" and len(source.pieces) == 6
    script = source.script(1, 2, 4)  # the second of two sessions reads four sentences in a row
    assert [line.text for line in script.lines] == list(params.texts[3:6] + params.texts[:1])
    inner = [b.start_ms - a.end_ms for a, b in itertools.pairwise(script.lines[:3])]
    assert all(150 <= g <= 501 for g in inner), inner


def test_commands_are_made_one_to_two_seconds_long_by_piper() -> None:
    pytest.importorskip("piper")
    # "Stop." comes out about half a second long at the normal pace: it is made again, slower
    params = params_for("commands", texts=["Stop.", "Turn off the kitchen lights."])
    lengths = [clip.size / RATE for clip in speech_kinds.synthesize(params)]
    assert all(1.0 <= s <= 2.0 for s in lengths), lengths
    assert corpus.RATE == RATE


def test_a_missing_kind_corpus_is_refused_before_any_server_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--input", "dialogue", "--corpus", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("streamer bench: no readable corpus")


def test_the_bench_runs_a_kind_and_judges_continuous_speech_per_final(tmp_path: Path) -> None:
    params = params_for("dialogue", texts=["are you coming", "yes I am"])
    speech_kinds.build(params, tmp_path / "dialogue", fake_clips(2))
    out = tmp_path / "r.json"
    argv = ["bench", "--input", "dialogue", "--corpus", str(tmp_path / "dialogue"), "--sessions", "1"]
    argv += ["--modes", "on", "--starts", "sync", "--model", str(tmp_path / "no-model"), "--out", str(out)]
    assert main(argv) == 1  # no model: the server does not start, and the report says what it ran
    report = json.loads(out.read_text())
    assert report["input"]["kind"] == "dialogue" and report["latency_measure"] == "end_lat_p95"


# --- final-end latency


def final(start: float, end: float) -> dict[str, Any]:
    return {"type": "transcript.final", "audio_start_ms": start, "audio_end_ms": end, "text": "x"}


def test_final_end_latency_runs_from_each_finals_last_audio_sent() -> None:
    chunk_times = [100.0 + 0.1 * k for k in range(40)]  # 100 ms chunks sent on time
    # a continuous sentence of 3.5 s cut at a comma (1.45 s) into two finals
    finals = [(101.9, final(0, 1450)), (104.2, final(1450, 3500))]
    assert end_latencies(finals, chunk_times, 100.0) == pytest.approx([101.9 - 101.4, 104.2 - 103.4])
    score = score_session([Line(0, 3500, "x")], chunk_times, 100.0, finals)
    # the sentence waits for its last final; each final waits only for its own audio
    assert score.latencies == pytest.approx([104.2 - 103.4])
    assert score.summary()["end_lat_p95"] == pytest.approx(0.8)
    # a final whose audio was never sent (the session broke off) has no latency
    assert end_latencies([(105.0, final(0, 9000))], chunk_times, 100.0) == []


def test_continuous_speech_is_judged_on_final_end_latency() -> None:
    assert latency_measure("continuous") == latency_measure("dialogue") == "end_lat_p95"
    assert latency_measure("commands") == latency_measure("corpus") == "lat_p95"
    row = {"mode": "on", "starts": "sync", "sessions": 4, "refused": 0, "lat_p95": 6.0, "end_lat_p95": 1.2}
    assert within_bound(row, 1.5, "end_lat_p95") and not within_bound(row, 1.5)
    assert capacity([row], 1.5, "end_lat_p95") == {"sync": {"on": 4}}
