"""translate_batch wiring: how each family's inputs are framed, outputs unframed, and languages checked.

The tiny models have random weights, so these tests look at what reaches CTranslate2 (through a spy around
the real ``ctranslate2.Translator``) and at how canned hypotheses are decoded, not at translation quality.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ctranslate2
import pytest
import sentencepiece

from streamer import errors
from streamer.pipeline.mt import CT2Translator, UnsupportedLanguageError

TEXTS = ["the red cat", "", "a big dog runs under the tree", "   ", "my old fish eats"]


@dataclass
class SpyTranslator:
    """Stands in for ``ctranslate2.Translator``: records each call, then runs the real model or, when
    ``canned`` is set, returns those hypotheses instead."""

    inner: Any
    calls: list[tuple[list[list[str]], dict[str, Any]]] = field(default_factory=list)
    canned: list[list[str]] | None = None

    def translate_batch(self, source: list[list[str]], **options: Any) -> Any:
        self.calls.append((source, options))
        if self.canned is not None:
            return [SimpleNamespace(hypotheses=[tokens]) for tokens in self.canned]
        return self.inner.translate_batch(source, **options)


Load = Callable[[Path], tuple[CT2Translator, SpyTranslator]]


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> Load:
    """Load a model with its ``ctranslate2.Translator`` wrapped in a spy; returns (translator, spy)."""
    real = ctranslate2.Translator
    spies: list[SpyTranslator] = []

    def spied(*args: Any, **kwargs: Any) -> SpyTranslator:
        spies.append(SpyTranslator(real(*args, **kwargs)))
        return spies[-1]

    monkeypatch.setattr(ctranslate2, "Translator", spied)

    def load_model(path: Path) -> tuple[CT2Translator, SpyTranslator]:
        # One intra-op thread: idle OpenMP workers spin after each call and would slow the tests on small
        # CI machines.
        translator = CT2Translator(path, intra_threads=1)
        return translator, spies[-1]

    return load_model


def _spm(path: Path, name: str) -> Any:
    return sentencepiece.SentencePieceProcessor(model_file=str(path / name))


# (model fixture, source SentencePiece file, target SentencePiece file, tokens before the text, target prefix)
FAMILIES = [
    ("nllb_model_dir", "sentencepiece.bpe.model", "sentencepiece.bpe.model", ["eng_Latn"], ["spa_Latn"]),
    ("m2m100_model_dir", "spm.128k.model", "spm.128k.model", ["__en__"], ["__es__"]),
    ("marian_model_dir", "source.spm", "target.spm", [], None),
    ("marian_multi_model_dir", "source.spm", "target.spm", [">>es<<"], None),
]


@pytest.mark.parametrize(("model", "source_spm", "target_spm", "head", "prefix"), FAMILIES)
def test_batch_is_framed_for_the_family(
    request: pytest.FixtureRequest,
    load: Load,
    model: str,
    source_spm: str,
    target_spm: str,
    head: list[str],
    prefix: list[str] | None,
) -> None:
    path: Path = request.getfixturevalue(model)
    translator, spy = load(path)

    results = translator.translate_batch(TEXTS, "en", "es", beam_size=2, max_decoding_length=12)

    assert len(results) == len(TEXTS)
    assert all(isinstance(r, str) for r in results)
    assert results[1] == results[3] == ""
    assert len(spy.calls) == 1, "one model call for the whole batch"
    source, options = spy.calls[0]
    sp = _spm(path, source_spm)
    expected = [[*head, *sp.encode(text, out_type=str), "</s>"] for text in TEXTS if text.strip()]
    assert source == expected
    assert options["target_prefix"] == (None if prefix is None else [prefix] * 3)
    assert options["beam_size"] == 2
    assert options["max_decoding_length"] == 12
    if prefix is not None:
        assert not any(r.startswith(prefix[0]) for r in results)


@pytest.mark.parametrize(("model", "source_spm", "target_spm", "head", "prefix"), FAMILIES)
def test_hypotheses_are_unframed_and_decoded_in_order(
    request: pytest.FixtureRequest,
    load: Load,
    model: str,
    source_spm: str,
    target_spm: str,
    head: list[str],
    prefix: list[str] | None,
) -> None:
    path: Path = request.getfixturevalue(model)
    translator, spy = load(path)
    sp = _spm(path, target_spm)
    wanted = ["hola mundo", "el gato come", "la casa roja"]
    spy.canned = [[*(prefix or []), *sp.encode(text, out_type=str)] for text in wanted]

    results = translator.translate_batch(["one", "", "two", "three"], "en", "es")

    assert results == [wanted[0], "", wanted[1], wanted[2]]


def test_real_model_output_is_deterministic(nllb_model_dir: Path) -> None:
    translator = CT2Translator(nllb_model_dir, intra_threads=1)
    first = translator.translate_batch(TEXTS, "en", "de", max_decoding_length=10)
    assert translator.translate_batch(TEXTS, "en", "de", max_decoding_length=10) == first


def test_blank_texts_never_reach_the_model(nllb_model_dir: Path, load: Load) -> None:
    translator, spy = load(nllb_model_dir)
    assert translator.translate_batch(["", "  ", "\n"], "en", "es") == ["", "", ""]
    assert translator.translate_batch([], "en", "es") == []
    assert spy.calls == []


def test_regional_codes_are_normalized(nllb_model_dir: Path, load: Load) -> None:
    translator, spy = load(nllb_model_dir)
    translator.translate_batch(["the cat"], "en-US", "ES_mx", max_decoding_length=4)
    source, options = spy.calls[0]
    assert source[0][0] == "eng_Latn"
    assert options["target_prefix"] == [["spa_Latn"]]


@pytest.mark.parametrize(
    ("model", "source", "target", "bad"),
    [
        ("nllb_model_dir", "en", "fr", "fr"),
        ("nllb_model_dir", "ja", "es", "ja"),
        ("m2m100_model_dir", "en", "xx", "xx"),
        ("marian_model_dir", "en", "de", "de"),
        ("marian_model_dir", "de", "es", "de"),
        ("marian_multi_model_dir", "en", "fr", "fr"),
    ],
)
def test_unsupported_languages_raise(
    request: pytest.FixtureRequest, load: Load, model: str, source: str, target: str, bad: str
) -> None:
    translator, spy = load(request.getfixturevalue(model))
    with pytest.raises(UnsupportedLanguageError) as info:
        translator.translate_batch(["the cat"], source, target)
    assert info.value.language == bad
    assert repr(bad) in info.value.message
    assert isinstance(info.value, errors.UnsupportedLanguageError)
    assert info.value.code == "unsupported_language"
    assert spy.calls == []


def test_supports(nllb_model_dir: Path, marian_model_dir: Path) -> None:
    nllb = CT2Translator(nllb_model_dir, intra_threads=1)
    assert nllb.supports("en", "es")
    assert nllb.supports(None, "de")
    assert nllb.supports("DE", "en-GB")
    assert not nllb.supports("en", "fr")
    assert not nllb.supports("fr", "en")
    marian = CT2Translator(marian_model_dir, intra_threads=1)
    assert marian.supports("en", "es")
    assert marian.supports(None, "es")
    assert not marian.supports("es", "en")


def test_runs_on_a_worker_thread(m2m100_model_dir: Path) -> None:
    # The server loads and calls the engine on its dedicated model thread, never on the event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        translator = pool.submit(CT2Translator, m2m100_model_dir, intra_threads=1).result(timeout=30)
        future = pool.submit(translator.translate_batch, ["the cat", "", "a dog"], "en", "de", 1, 8)
        results = future.result(timeout=30)
    assert len(results) == 3
    assert results[1] == ""
