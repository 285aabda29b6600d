"""Tiny CTranslate2 translation models, built on the fly: no weights in the repository, no network.

Each model is a real CTranslate2 Transformer (one encoder and one decoder layer, d_model 16) with random
weights and a real SentencePiece model trained on a generated corpus, laid out the way NLLB-200, M2M100 and
OPUS-MT conversions are. The output text is arbitrary; what the tests check is the wiring around the model.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
import sentencepiece
from ctranslate2.specs import transformer_spec
from redis.exceptions import RedisError

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
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # fairseq's order, which NLLB and M2M100 conversions keep
D_MODEL, D_FFN = 16, 32


def _corpus(words: list[str], seed: int, lines: int = 300) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(lines)]


def train_spm(words: list[str], seed: int, vocab_size: int = 80) -> bytes:
    """A serialized BPE SentencePiece model trained on sentences made of ``words``."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(words, seed)),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        minloglevel=2,
    )
    return model.getvalue()


def spm_pieces(model: bytes) -> list[str]:
    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def make_vocabulary(*token_lists: Iterable[str]) -> list[str]:
    """Special tokens first, then every other token once, in order."""
    return list(dict.fromkeys([*SPECIALS, *(t for tokens in token_lists for t in tokens)]))


def save_ct2_model(out_dir: Path, vocabulary: list[str], *, marian: bool = False, seed: int = 0) -> None:
    """Write a random-weight CTranslate2 Transformer with a shared ``vocabulary`` to ``out_dir``."""
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def linear(spec: Any, out_dim: int, in_dim: int) -> None:
        spec.weight = weights(out_dim, in_dim)
        spec.bias = np.zeros(out_dim, np.float32)

    def norm(spec: Any) -> None:
        spec.gamma = np.ones(D_MODEL, np.float32)
        spec.beta = np.zeros(D_MODEL, np.float32)

    def attention(spec: Any, self_attention: bool) -> None:
        if self_attention:
            linear(spec.linear[0], 3 * D_MODEL, D_MODEL)  # fused q, k, v
        else:
            linear(spec.linear[0], D_MODEL, D_MODEL)  # q from the decoder
            linear(spec.linear[1], 2 * D_MODEL, D_MODEL)  # fused k, v from the encoder
        linear(spec.linear[-1], D_MODEL, D_MODEL)
        norm(spec.layer_norm)

    def ffn(spec: Any) -> None:
        norm(spec.layer_norm)
        linear(spec.linear_0, D_FFN, D_MODEL)
        linear(spec.linear_1, D_MODEL, D_FFN)

    # Marian is post-norm and starts decoding from a zero embedding; NLLB and M2M100 are pre-norm.
    spec = transformer_spec.TransformerSpec.from_config((1, 1), num_heads=2, pre_norm=not marian)
    size = len(vocabulary)
    spec.encoder.embeddings[0].weight = weights(size, D_MODEL)
    spec.decoder.embeddings.weight = weights(size, D_MODEL)
    linear(spec.decoder.projection, size, D_MODEL)
    for stack in (spec.encoder, spec.decoder):
        if hasattr(stack, "layer_norm"):
            norm(stack.layer_norm)
    for layer in spec.encoder.layer:
        attention(layer.self_attention, self_attention=True)
        ffn(layer.ffn)
    for layer in spec.decoder.layer:
        attention(layer.self_attention, self_attention=True)
        attention(layer.attention, self_attention=False)
        ffn(layer.ffn)
    if marian:
        spec.decoder.start_from_zero_embedding = True
    spec.config.decoder_start_token = "</s>"
    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    spec.validate()
    spec.optimize(quantization="float32")
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))


CopyModel = Callable[..., Path]


@pytest.fixture
def copy_model(tmp_path: Path) -> CopyModel:
    """``copy_model(src, name, without=(...))``: a copy of a model directory under ``tmp_path`` named
    ``name`` (to rename or break it), leaving out the files named in ``without``."""

    def copy(src: Path, name: str, without: tuple[str, ...] = ()) -> Path:
        dst = tmp_path / name
        shutil.copytree(src, dst, ignore=lambda _dir, names: [n for n in names if n in without])
        return dst

    return copy


@pytest.fixture(scope="session")
def en_spm() -> bytes:
    return train_spm(EN_WORDS + ES_WORDS, seed=1)


@pytest.fixture(scope="session")
def es_spm() -> bytes:
    return train_spm(ES_WORDS, seed=2, vocab_size=70)


@pytest.fixture(scope="session")
def nllb_model_dir(tmp_path_factory: pytest.TempPathFactory, en_spm: bytes) -> Path:
    """NLLB-200 layout: shared_vocabulary.json with FLORES-200 codes, sentencepiece.bpe.model."""
    path = tmp_path_factory.mktemp("models") / "nllb-200-tiny"
    save_ct2_model(path, make_vocabulary(spm_pieces(en_spm), ["eng_Latn", "spa_Latn", "deu_Latn"]))
    (path / "sentencepiece.bpe.model").write_bytes(en_spm)
    return path


@pytest.fixture(scope="session")
def m2m100_model_dir(tmp_path_factory: pytest.TempPathFactory, en_spm: bytes) -> Path:
    """M2M100 layout as older conversions wrote it: shared_vocabulary.txt, spm.128k.model."""
    path = tmp_path_factory.mktemp("models") / "m2m100-tiny"
    vocabulary = make_vocabulary(spm_pieces(en_spm), ["__en__", "__es__", "__de__"], ["madeupword0"])
    save_ct2_model(path, vocabulary, seed=1)
    json_vocab = path / "shared_vocabulary.json"
    (path / "shared_vocabulary.txt").write_text("\n".join(json.loads(json_vocab.read_text())) + "\n")
    json_vocab.unlink()
    (path / "spm.128k.model").write_bytes(en_spm)
    return path


def _marian_dir(path: Path, en_spm: bytes, es_spm: bytes, extra_tokens: list[str]) -> Path:
    vocabulary = make_vocabulary(extra_tokens, spm_pieces(en_spm), spm_pieces(es_spm))
    save_ct2_model(path, vocabulary, marian=True, seed=2)
    (path / "source.spm").write_bytes(en_spm)
    (path / "target.spm").write_bytes(es_spm)
    return path


@pytest.fixture(scope="session")
def marian_model_dir(tmp_path_factory: pytest.TempPathFactory, en_spm: bytes, es_spm: bytes) -> Path:
    """A bilingual OPUS-MT model whose pair is only in its directory name."""
    return _marian_dir(tmp_path_factory.mktemp("models") / "opus-mt-en-es", en_spm, es_spm, [])


@pytest.fixture(scope="session")
def marian_multi_model_dir(tmp_path_factory: pytest.TempPathFactory, en_spm: bytes, es_spm: bytes) -> Path:
    """A multi-target OPUS-MT model (``>>es<<`` markers) described by a streamer.json sidecar."""
    path = tmp_path_factory.mktemp("models") / "marian-en-multi"
    _marian_dir(path, en_spm, es_spm, [">>es<<", ">>de<<"])
    (path / "streamer.json").write_text(json.dumps({"family": "marian", "source_lang": "en"}))
    return path


@pytest.fixture
def redis_url() -> str:
    """The test Redis: ``STREAMER_TEST_REDIS_URL``, else the local default."""
    return os.environ.get("STREAMER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the test Redis. Skips when none is reachable, unless ``CI`` is set: then it fails."""
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        await client.ping()
    except (RedisError, OSError) as e:
        await client.aclose()
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {redis_url} is not reachable and CI is set: {e}")
        pytest.skip(f"Redis at {redis_url} is not reachable: {e}")
    try:
        yield client
    finally:
        await client.aclose()
