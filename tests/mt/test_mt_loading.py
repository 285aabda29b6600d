"""Loading translation models: family detection, sidecars, language sets, and load errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from streamer import errors
from streamer.pipeline.mt import CT2Translator, ModelFamily, ModelLoadError, detect_family

CopyModel = Callable[..., Path]  # the conftest fixture: copy_model(src, name, without=())


def test_detects_each_family(
    nllb_model_dir: Path, m2m100_model_dir: Path, marian_model_dir: Path, marian_multi_model_dir: Path
) -> None:
    assert detect_family(nllb_model_dir) is ModelFamily.NLLB
    assert detect_family(m2m100_model_dir) is ModelFamily.M2M100
    assert detect_family(marian_model_dir) is ModelFamily.MARIAN
    assert detect_family(marian_multi_model_dir) is ModelFamily.MARIAN


def test_nllb_languages_come_from_the_vocabulary(nllb_model_dir: Path) -> None:
    translator = CT2Translator(nllb_model_dir)
    assert translator.name == "nllb-200-tiny"
    assert translator.family is ModelFamily.NLLB
    assert translator.source_languages() == {"en", "es", "de"}
    assert translator.target_languages() == {"en", "es", "de"}


def test_m2m100_languages_come_from_a_txt_vocabulary(m2m100_model_dir: Path) -> None:
    translator = CT2Translator(m2m100_model_dir)
    assert translator.family is ModelFamily.M2M100
    assert translator.source_languages() == {"en", "es", "de"}
    assert translator.target_languages() == {"en", "es", "de"}


def test_marian_pair_from_directory_name(marian_model_dir: Path) -> None:
    translator = CT2Translator(marian_model_dir)
    assert translator.family is ModelFamily.MARIAN
    assert translator.source_languages() == {"en"}
    assert translator.target_languages() == {"es"}


def test_marian_targets_from_markers_and_sidecar(marian_multi_model_dir: Path) -> None:
    translator = CT2Translator(marian_multi_model_dir)
    assert translator.source_languages() == {"en"}
    assert translator.target_languages() == {"es", "de"}


def test_marian_sidecar_states_the_pair(marian_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(marian_model_dir, "my-marian")
    sidecar = {"family": "Marian", "source_lang": "de", "target_langs": ["fr", "it"]}
    (path / "streamer.json").write_text(json.dumps(sidecar))
    translator = CT2Translator(path)
    assert translator.source_languages() == {"de"}
    assert translator.target_languages() == {"fr", "it"}


def test_opus_mt_names_with_suffixes_are_parsed(marian_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(marian_model_dir, "Helsinki-NLP--opus-mt-en-de-ct2-int8")
    assert CT2Translator(path).target_languages() == {"de"}


def test_marian_without_a_pair_names_the_sidecar(marian_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(marian_model_dir, "some-marian")
    with pytest.raises(ModelLoadError, match=re.escape("streamer.json")) as info:
        CT2Translator(path)
    assert str(path) in str(info.value)


def test_explicit_family_overrides_detection(nllb_model_dir: Path) -> None:
    # Read as M2M100, the NLLB vocabulary has none of the language tokens.
    translator = CT2Translator(nllb_model_dir, family=ModelFamily.M2M100)
    assert translator.family is ModelFamily.M2M100
    assert translator.target_languages() == frozenset()


def test_sidecar_family_overrides_detection(nllb_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(nllb_model_dir, "model")
    (path / "streamer.json").write_text('{"family": "m2m100"}')
    assert detect_family(path) is ModelFamily.M2M100


def test_missing_model_bin_names_the_path(nllb_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(nllb_model_dir, "broken", without=("model.bin",))
    with pytest.raises(ModelLoadError, match=re.escape("model.bin")) as info:
        CT2Translator(path)
    assert str(path) in str(info.value)
    assert info.value.path == path
    assert isinstance(info.value, errors.ModelNotFoundError)


def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=re.escape("model.bin")) as info:
        CT2Translator(str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(info.value)


def test_missing_sentencepiece_model_names_what_is_missing(
    nllb_model_dir: Path, copy_model: CopyModel
) -> None:
    path = copy_model(nllb_model_dir, "no-spm", without=("sentencepiece.bpe.model",))
    with pytest.raises(ModelLoadError, match=re.escape("sentencepiece.bpe.model")) as info:
        CT2Translator(path)
    assert str(path) in str(info.value)


def test_missing_marian_target_spm(marian_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(marian_model_dir, "opus-mt-en-es", without=("target.spm",))
    with pytest.raises(ModelLoadError, match=re.escape("target.spm")):
        CT2Translator(path, family=ModelFamily.MARIAN)


def test_corrupt_sentencepiece_model(nllb_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(nllb_model_dir, "corrupt")
    (path / "sentencepiece.bpe.model").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="not a SentencePiece model"):
        CT2Translator(path)


def test_missing_vocabulary(nllb_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(nllb_model_dir, "no-vocab", without=("shared_vocabulary.json",))
    with pytest.raises(ModelLoadError, match="shared_vocabulary"):
        CT2Translator(path)


def test_invalid_sidecar(nllb_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(nllb_model_dir, "bad-sidecar")
    (path / "streamer.json").write_text('{"family": "gpt"}')
    with pytest.raises(ModelLoadError, match=re.escape("streamer.json")):
        CT2Translator(path)


def test_undetectable_family(nllb_model_dir: Path, copy_model: CopyModel) -> None:
    path = copy_model(nllb_model_dir, "mystery")
    vocabulary = json.loads((path / "shared_vocabulary.json").read_text())
    (path / "shared_vocabulary.json").write_text(json.dumps([t for t in vocabulary if "_" not in t]))
    with pytest.raises(ModelLoadError, match="family"):
        detect_family(path)
