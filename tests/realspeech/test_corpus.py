"""The corpus generator's signal processing and layout (no TTS: made-up clips stand in for the voice),
and the committed fixtures' manifest."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from realspeech.streaming import committed
from streamer_bench import corpus, signals
from streamer_bench.corpus import CorpusParams
from streamer_bench.wer import words


def band_energy(x: np.ndarray, rate: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / rate)
    return float(spectrum[(f >= low) & (f < high)].sum() / spectrum.sum())


def test_noise_is_mixed_at_the_asked_snr_over_the_speech_only() -> None:
    rng = np.random.default_rng(1)
    speech = np.zeros(32000, dtype=np.float32)
    speech[8000:16000] = 0.1 * np.sin(np.arange(8000) * 0.3)  # the pause around it must not count
    noise = signals.pink_noise(32000, rng)
    mixed = signals.mix_at_snr(speech, [(8000, 16000)], noise, 10.0)
    added = mixed - speech
    snr = 10 * np.log10(signals.rms(speech[8000:16000]) ** 2 / signals.rms(added) ** 2)
    assert snr == pytest.approx(10.0, abs=0.05)


def test_pink_noise_falls_3_db_per_octave() -> None:
    x = signals.pink_noise(1 << 16, np.random.default_rng(2))
    low, high = band_energy(x, 16000, 250, 500), band_energy(x, 16000, 2000, 4000)
    assert 10 * np.log10(low / high) == pytest.approx(0.0, abs=1.0)  # equal energy per octave
    assert signals.rms(x) == pytest.approx(1.0, rel=1e-3)


def test_telephone_band_is_300_to_3400_hz_at_8_khz() -> None:
    x = signals.white_noise(32000, np.random.default_rng(3))
    tel = signals.telephone(x, 16000)
    assert tel.size == 16000
    assert band_energy(tel, 8000, 0, 200) < 0.002
    assert band_energy(tel, 8000, 3550, 4000) < 0.002
    assert band_energy(tel, 8000, 300, 3400) > 0.95


def test_levels_are_rms_but_never_clip() -> None:
    x = np.sin(np.arange(16000) * 0.05).astype(np.float32)  # crest factor 3 dB
    assert 20 * np.log10(signals.rms(signals.set_level(x, -30.0))) == pytest.approx(-30.0, abs=0.01)
    loud = signals.set_level(x, -1.0)  # would need a peak of +2 dB: held at -1 dBFS instead
    assert np.max(np.abs(loud)) == pytest.approx(signals.db_to_gain(-1.0), rel=1e-4)


@pytest.mark.parametrize("kind", corpus.NONSPEECH)
def test_nonspeech_clips_are_reproducible(kind: str, tmp_path: Path) -> None:
    params = CorpusParams(nonspeech_s=2.0)
    made = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        item = corpus._nonspeech_item(params, kind, tmp_path / name)
        assert item.duration_ms == 2000 and item.sentences == []
        made.append((tmp_path / name / item.file).read_bytes())
    assert made[0] == made[1]


def fake_clips(n: int) -> dict[str, list[np.ndarray]]:
    """Noise bursts standing in for sentences: 1.0, 1.5, 2.0 ... s long at normal speed."""
    rng = np.random.default_rng(4)
    out: dict[str, list[np.ndarray]] = {}
    for speed, scale in corpus.SPEEDS.items():
        clips = [
            rng.uniform(-0.1, 0.1, int(16000 * (1 + k / 2) * scale)).astype(np.float32) for k in range(n)
        ]
        out[speed] = clips
    return out


def test_streams_share_a_timeline_and_carry_their_condition(tmp_path: Path) -> None:
    params = CorpusParams(sentences=("one two", "three four", "five six", "seven eight", "nine ten", "a b c"))
    clips = fake_clips(6)
    items = {
        c: corpus._speech_item(params, c, clips, tmp_path)
        for c in ("clean", "snr10", "level", "tel8k", "slow")
    }
    spans = [(s.start_ms, s.end_ms) for s in items["clean"].sentences]
    for cond in ("snr10", "level", "tel8k"):
        assert [(s.start_ms, s.end_ms) for s in items[cond].sentences] == spans
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    assert all(300 <= g <= 2000 for g in gaps), gaps
    assert [s.noise for s in items["snr10"].sentences] == [
        "white",
        "white",
        "pink",
        "pink",
        "babble",
        "babble",
    ]
    assert [s.level_dbfs for s in items["level"].sentences] == [-30.0, -24.0, -18.0, -12.0, -6.0, -30.0]
    assert items["tel8k"].sample_rate == 8000
    assert items["slow"].sentences[-1].end_ms > spans[-1][1]  # slower speech, longer stream
    # the files hold what the manifest says
    loaded = corpus.Corpus(tmp_path, "test", list(items.values()))
    for item in items.values():
        assert loaded.pcm(item).size * 1000 // item.sample_rate == item.duration_ms


def test_the_committed_fixtures_match_their_manifest() -> None:
    fixtures = committed()
    total = sum((fixtures.root / it.file).stat().st_size for it in fixtures.items)
    assert total < 2_000_000  # small pieces only; the bench generates the rest
    for item in fixtures.items:
        pcm = fixtures.pcm(item)
        assert abs(pcm.size * 1000 // item.sample_rate - item.duration_ms) <= 1
        for s in item.sentences:
            assert 0 < s.start_ms < s.end_ms < item.duration_ms
            assert s.content_words and set(s.content_words) <= set(words(s.text))
            speech = pcm[s.start_ms * item.sample_rate // 1000 : s.end_ms * item.sample_rate // 1000]
            assert np.sqrt(np.mean(speech.astype(np.float64) ** 2)) > 300  # someone speaks there
    assert {it.id for it in fixtures.items} >= {"clean", "snr20", "tel8k", "nonspeech_music"}
