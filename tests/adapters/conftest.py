"""Shared for the vendor-surface tests: the first corpus sentence, servers started and closed for a test,
the SDKs' base URLs."""

from __future__ import annotations

import json
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad
from support import FIXTURES, make_settings

from streamer.app import create_app
from streamer.config import Settings

CORPUS = FIXTURES / "corpus"
CUT_S = 3.5  # the first sentence (0.5-2.1 s) and the silence after it, before the second begins (4.0 s)


@dataclass(frozen=True)
class Sentence:
    """The first sentence of the corpus: 16 kHz samples, its text, its content words and its times."""

    samples: np.ndarray
    text: str
    content_words: list[str]
    start_s: float
    end_s: float


@pytest.fixture(scope="session")
def sentence() -> Sentence:
    manifest: dict[str, Any] = json.loads((CORPUS / "manifest.json").read_text())
    item = next(i for i in manifest["items"] if i["id"] == "clean")
    first = item["sentences"][0]
    with wave.open(str(CORPUS / "clean.wav"), "rb") as w:
        assert w.getframerate() == 16000
        samples = np.frombuffer(w.readframes(int(CUT_S * 16000)), dtype="<i2")
    return Sentence(
        samples, first["text"], first["content_words"], first["start_ms"] / 1000, first["end_ms"] / 1000
    )


@pytest.fixture
async def servers() -> AsyncIterator[list[TestServer]]:
    """The servers a test starts with :func:`start`, closed after it (closing one first is harmless)."""
    started: list[TestServer] = []
    yield started
    for server in started:
        await server.close()


async def start(servers: list[TestServer], asr: FakeAsr, **settings: Any) -> TestServer:
    """A server on ``asr`` and the energy VAD with ``settings``, closed with the test's ``servers``."""
    server = TestServer(create_app(make_settings(**settings), asr_engine=asr, vad=EnergyVad()))
    await server.start_server()
    servers.append(server)
    return server


def adapter_settings(**overrides: Any) -> Settings:
    return make_settings(**overrides)


def http_base(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


def ws_base(server: TestServer) -> str:
    return f"ws://{server.host}:{server.port}"
