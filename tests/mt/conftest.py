"""Tiny CTranslate2 translation models (see ``builders``), built once per test session, and the test Redis."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from mt import builders
from redis.exceptions import RedisError

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
    return builders.en_spm()


@pytest.fixture(scope="session")
def es_spm() -> bytes:
    return builders.es_spm()


@pytest.fixture(scope="session")
def nllb_model_dir(tmp_path_factory: pytest.TempPathFactory, en_spm: bytes) -> Path:
    """NLLB-200 layout: shared_vocabulary.json with FLORES-200 codes, sentencepiece.bpe.model."""
    return builders.build_nllb(tmp_path_factory.mktemp("models") / "nllb-200-tiny", en_spm)


@pytest.fixture(scope="session")
def m2m100_model_dir(tmp_path_factory: pytest.TempPathFactory, en_spm: bytes) -> Path:
    """M2M100 layout as older conversions wrote it: shared_vocabulary.txt, spm.128k.model."""
    return builders.build_m2m100(tmp_path_factory.mktemp("models") / "m2m100-tiny", en_spm)


@pytest.fixture(scope="session")
def marian_model_dir(tmp_path_factory: pytest.TempPathFactory, en_spm: bytes, es_spm: bytes) -> Path:
    """A bilingual OPUS-MT model whose pair is only in its directory name."""
    return builders.build_marian(tmp_path_factory.mktemp("models") / "opus-mt-en-es", en_spm, es_spm, [])


@pytest.fixture(scope="session")
def marian_multi_model_dir(tmp_path_factory: pytest.TempPathFactory, en_spm: bytes, es_spm: bytes) -> Path:
    """A multi-target OPUS-MT model (``>>es<<`` markers) described by a streamer.json sidecar."""
    path = tmp_path_factory.mktemp("models") / "marian-en-multi"
    builders.build_marian(path, en_spm, es_spm, [">>es<<", ">>de<<"])
    (path / "streamer.json").write_text(json.dumps({"family": "marian", "source_lang": "en"}))
    return path


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
