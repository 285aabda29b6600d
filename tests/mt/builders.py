"""Tiny CTranslate2 translation models, built on the fly: no weights in the repository, no network.

Each model is a real CTranslate2 Transformer (one encoder and one decoder layer, d_model 16) with random
weights and a real SentencePiece model trained on a generated corpus, laid out the way NLLB-200, M2M100 and
OPUS-MT conversions are. The output text is arbitrary; what the tests check is the wiring around the model.

The Transformer and SentencePiece builders live in :mod:`streamer_bench.bench_mt` (``streamer bench-mt``
builds the same synthetic model); this module holds the test vocabularies and each family's directory
layout.
Plain functions, so ``tests/mt`` and ``tests/translation`` build the same models.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamer_bench.bench_mt import (
    build_nllb_like,
    make_vocabulary,
    save_random_transformer,
    spm_pieces,
    train_spm,
)

EN_WORDS = [
    "the", "a", "cat", "dog", "house", "red", "blue", "green", "small", "big", "tree", "river",
    "runs", "jumps", "sleeps", "under", "over", "quickly", "slowly", "and", "with", "my", "your", "old",
    "new", "bird", "fish", "eats", "sees",
]  # fmt: skip
ES_WORDS = [
    "el", "la", "gato", "perro", "casa", "roja", "azul", "verde", "pequeño", "grande", "árbol", "río",
    "corre", "salta", "duerme", "bajo", "sobre", "rápido", "lento", "y", "con", "mi", "tu", "viejo",
    "nuevo", "pájaro", "pez", "come", "ve", "hola", "mundo",
]  # fmt: skip


def en_spm() -> bytes:
    """The source-side SentencePiece model (English and Spanish words)."""
    return train_spm(EN_WORDS + ES_WORDS, seed=1)


def es_spm() -> bytes:
    """A Spanish-only SentencePiece model: the target side of the Marian models."""
    return train_spm(ES_WORDS, seed=2, vocab_size=70)


def build_nllb(path: Path, spm: bytes) -> Path:
    """NLLB-200 layout: shared_vocabulary.json with FLORES-200 codes (en, es, de), sentencepiece.bpe.model."""
    return build_nllb_like(path, spm, ["eng_Latn", "spa_Latn", "deu_Latn"])


def build_m2m100(path: Path, spm: bytes) -> Path:
    """M2M100 layout as older conversions wrote it: shared_vocabulary.txt, spm.128k.model."""
    vocabulary = make_vocabulary(spm_pieces(spm), ["__en__", "__es__", "__de__"], ["madeupword0"])
    save_random_transformer(path, vocabulary, seed=1)
    json_vocab = path / "shared_vocabulary.json"
    (path / "shared_vocabulary.txt").write_text("\n".join(json.loads(json_vocab.read_text())) + "\n")
    json_vocab.unlink()
    (path / "spm.128k.model").write_bytes(spm)
    return path


def build_marian(path: Path, source_spm: bytes, target_spm: bytes, extra_tokens: list[str]) -> Path:
    """OPUS-MT layout: source.spm, target.spm; ``extra_tokens`` (``>>es<<``) first in the vocabulary."""
    vocabulary = make_vocabulary(extra_tokens, spm_pieces(source_spm), spm_pieces(target_spm))
    save_random_transformer(path, vocabulary, marian=True, seed=2)
    (path / "source.spm").write_bytes(source_spm)
    (path / "target.spm").write_bytes(target_spm)
    return path
