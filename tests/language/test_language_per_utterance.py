"""Each utterance's own language (issue 24 item 5) through protocol v1, with the real ``base`` model on the
bilingual clip (English from piper, Japanese from Kokoro, taking turns)."""

from __future__ import annotations

from typing import Any

import pytest
from support import API_KEY, base_url

from streamer.client import ClientError, StreamerClient
from streamer.pipeline.asr import AsrEngine
from streamer_bench.bilingual import Bilingual

from .conftest import bilingual_pcm, events_until_closed, send_audio

pytestmark = pytest.mark.slow


async def _finals(make_server: Any, engine: AsrEngine, config: dict[str, Any]) -> list[dict[str, Any]]:
    server = await make_server(asr_engine=engine)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"interim_results": False, **config})
        async with stream:
            await send_audio(stream, bilingual_pcm())
            await stream.close_session()
            events = await events_until_closed(stream, timeout=90)
    return [e for e in events if e["type"] == "transcript.final"]


async def test_a_session_that_switches_language_gets_each_utterance_in_its_own(
    make_server: Any, base_engine: AsrEngine, bilingual: Bilingual
) -> None:
    finals = await _finals(make_server, base_engine, {"language": "auto"})
    assert [f["language"] for f in finals] == [u.language for u in bilingual.utterances], finals
    for final in finals:
        assert 0.5 < final["language_probability"] <= 1.0, final
    # each is transcribed in its language: Japanese in Japanese script, English in Latin letters
    assert all(any("\u3040" <= c <= "\u9fff" for c in f["text"]) for f in finals if f["language"] == "ja")
    assert all(f["text"].isascii() for f in finals if f["language"] == "en"), finals


async def test_detection_chooses_only_among_the_clients_languages(
    make_server: Any, base_engine: AsrEngine, bilingual: Bilingual
) -> None:
    # Japanese is not on the list: its utterances get one of the two that are (or, decoded as a language
    # they are not in, are refused as unrecognized speech); the English ones stay English
    finals = await _finals(make_server, base_engine, {"languages": ["en", "de"]})
    assert {f["language"] for f in finals} <= {"en", "de"}, finals
    for u in bilingual.utterances:
        if u.language == "en":  # the final whose span holds the sentence's middle
            middle = (u.start_ms + u.end_ms) // 2
            (final,) = [f for f in finals if f["audio_start_ms"] <= middle <= f["audio_end_ms"]]
            assert final["language"] == "en", final
    for final in finals:  # renormalized among the two
        assert 0.5 <= final["language_probability"] <= 1.0, final


async def test_a_given_language_is_not_detected(make_server: Any, base_engine: AsrEngine) -> None:
    finals = await _finals(make_server, base_engine, {"language": "en"})
    assert finals and all(f["language"] == "en" and "language_probability" not in f for f in finals)


async def test_language_lists_are_checked_against_the_model(make_server: Any) -> None:
    server = await make_server()  # the English-only tiny.en
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        for config, says in (
            ({"languages": ["en", "ja"]}, "'ja'"),
            ({"language": "en", "languages": ["de"]}, "not one of languages"),
            ({"languages": ["x"]}, "bad language code"),
        ):
            with pytest.raises(ClientError) as info:
                await client.create_session(config)
            assert (info.value.status, info.value.code) == (400, "invalid_config"), config
            assert says in info.value.message, info.value.message
        created = await client.create_session({"language": "auto", "languages": ["EN"]})
    assert created.config["language"] is None and created.config["languages"] == ["en"]


async def test_a_language_list_the_model_lacks_is_refused_in_an_update(make_server: Any) -> None:
    server = await make_server()  # the English-only tiny.en
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "auto"})
        async with stream:
            await stream.update(languages=["en", "ja"])
            error = await stream.receive(timeout=10)
            await stream.update(languages=["en"])  # a good one is applied: no error, the session goes on
            await stream.close_session()
            rest = await events_until_closed(stream, timeout=20)
    assert error is not None and error["type"] == "error" and error["code"] == "invalid_config", error
    assert "'ja'" in error["message"]
    assert [e["type"] for e in rest] == ["session.closed"], rest
