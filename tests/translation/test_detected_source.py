"""Translations follow each utterance's detected language (issue 24 item 5): an auto-language session whose
utterances come out in different languages has each translated from its own.

``SwitchingAsr`` stands in for detection (each final's language is the next of a cycle, with a
probability, as the real engine reports it); the real Silero VAD cuts the speech; a tiny NLLB-layout
model behind ``SpyEngine`` records which source language each text was translated from.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from support import API_KEY, base_url

from streamer.client import StreamerClient
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.pipeline.mt import CT2Translator

from .conftest import NumberingAsr, SpyEngine, events_until_closed, results_of, send_audio, speech


@dataclass
class SwitchingAsr(NumberingAsr):
    """A multilingual fake: a request without a language is "detected" as the next of ``cycle``."""

    multilingual: bool = True
    cycle: Iterator[str] = field(default_factory=lambda: itertools.cycle(("es", "de")))

    def languages(self) -> frozenset[str]:
        return frozenset({"en", "es", "de"})

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        out = []
        for request, result in zip(requests, super().transcribe_batch(requests), strict=True):
            detected = request.language is None
            language = next(self.cycle) if detected else request.language or "en"
            out.append(
                AsrResult(
                    result.text, language, avg_logprob=-0.1, language_probability=0.9 if detected else None
                )
            )
        return out


async def test_each_final_is_translated_from_its_own_language(make_server: Any, nllb: CT2Translator) -> None:
    spy = SpyEngine(nllb)
    server = await make_server(asr_engine=SwitchingAsr(), mt_engine=spy)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "auto", "translate_to": ["en"], "interim_results": False})
        async with stream:
            await send_audio(stream, speech("en_utt1.wav", "en_utt2.wav", "en_utt3.wav"))
            await stream.close_session()
            events = await events_until_closed(stream, timeout=30)
    finals = [e for e in results_of(events) if e["type"] == "transcript.final"]
    assert [f["language"] for f in finals] == ["es", "de", "es"], finals
    assert all(f["language_probability"] == 0.9 for f in finals)
    sources = {text: call.source for call in spy.calls for text in call.texts}
    assert [sources[f["text"]] for f in finals] == ["es", "de", "es"], spy.calls
    translations = [e for e in results_of(events) if e["type"] == "translation.final"]
    assert [t["language"] for t in translations] == ["en"] * 3
