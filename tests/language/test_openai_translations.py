"""``POST /v1/audio/translations`` with the official ``openai`` SDK: Spanish speech to English text with the
multilingual ``base`` model."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI
from support import API_KEY, load_transcripts, read_pcm16, silence, to_bytes

from streamer.pipeline.asr import AsrEngine
from streamer_bench.wer import words

pytestmark = pytest.mark.slow


def _wav(name: str) -> bytes:
    import io
    import wave

    samples = np.concatenate([silence(0.3), read_pcm16(name), silence(0.6)])
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(to_bytes(samples))
    return out.getvalue()


async def _translate(client: AsyncOpenAI, **params: Any) -> Any:
    """``client.audio.translations.create`` (which the SDK marks deprecated, as OpenAI's docs do not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return await client.audio.translations.create(**params)


async def test_speech_is_translated_to_english(make_server: Any, base_engine: AsrEngine) -> None:
    # (the Spanish clip: base translates it greedily with confidence; the German one needs the fallback
    # ladder, whose model-time budget makes its answer depend on how loaded the machine is)
    name = "es_utt1.wav"
    server = await make_server(asr_engine=base_engine)
    async with AsyncOpenAI(api_key=API_KEY, base_url=f"http://{server.host}:{server.port}/v1") as client:
        plain = await _translate(client, model="whisper-1", file=("a.wav", _wav(name)))
        verbose = await _translate(
            client,
            model="whisper-1",
            file=("a.wav", _wav(name)),
            response_format="verbose_json",
            temperature=0.0,
        )
    expected = load_transcripts()[name]["english_content_words"]
    said = set(words(plain.text))
    assert len(said & set(expected)) >= len(expected) // 2, plain.text
    assert verbose.text == plain.text, verbose
    assert verbose.language == "spanish"
    assert [s.text for s in verbose.segments or []] == [plain.text]
