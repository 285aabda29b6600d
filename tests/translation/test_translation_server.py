"""Translation through a real server: ``GET /v1/stream/models``, one ``translation.final`` per final and
target, in order, unsupported targets refused, batching across sessions, and the caches (in-process and
Redis).

FakeAsr makes the finals deterministic; the real Silero VAD cuts the English speech fixtures into
utterances; a tiny generated NLLB-layout model (behind ``SpyEngine``) does the translating.

The ordering the server guarantees (``StreamSession._emit_finals``): one emitter per session delivers
finals strictly in order, and for each final it awaits all of its translations before it takes the next
one. So on the wire, ``transcript.final`` n is followed by its translations (one per target, in the order
of ``translate_to``) and only then comes ``transcript.final`` n+1. Other events (speech.*, partials,
warnings) may fall in between; finals and translations never reorder.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from streamer.client import ClientError, StreamerClient
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.pipeline.mt import CT2Translator
from streamer.pipeline.mt_cache import cache_key

from .conftest import (
    NumberingAsr,
    SpyEngine,
    events_until,
    events_until_closed,
    results_of,
    send_audio,
    speech,
)

UTTERANCES = ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav")


def check_results(
    events: list[dict[str, Any]], targets: list[str], spy: SpyEngine, first_seq: int = 1
) -> list[dict[str, Any]]:
    """Assert the guaranteed shape: final n, then exactly one translation per target (same segment_id and
    seq, the model's translation of final n's text), then final n+1; seq counts up from ``first_seq``
    without gaps. Returns the finals."""
    results = results_of(events)
    finals = [e for e in results if e["type"] == "transcript.final"]
    expected: list[tuple[str, int, int, str]] = []
    for final in finals:
        expected.append(("transcript.final", final["segment_id"], final["seq"], final["language"]))
        expected += [("translation.final", final["segment_id"], final["seq"], t) for t in targets]
    assert [(e["type"], e["segment_id"], e["seq"], e["language"]) for e in results] == expected
    assert [f["seq"] for f in finals] == list(range(first_seq, first_seq + len(finals)))
    by_seq = {f["seq"]: f["text"] for f in finals}
    for e in results:
        if e["type"] == "translation.final":
            assert e["text"] in spy.translations_of(by_seq[e["seq"]], e["language"]), e
    return finals


async def test_models_lists_the_asr_and_mt_models(make_server: Any, nllb: CT2Translator) -> None:
    with_mt = await make_server(asr_engine=FakeAsr(), mt_engine=SpyEngine(nllb))
    without_mt = await make_server(asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url(with_mt)}/v1/stream/models") as r:
            assert r.status == 200
            body = await r.json()
        async with http.get(f"{base_url(with_mt)}/v1/models") as r:  # OpenAI's list keeps them (deprecated)
            assert r.status == 200
            listed = await r.json()
        async with http.get(f"{base_url(without_mt)}/v1/stream/models") as r:
            assert r.status == 200
            assert (await r.json())["mt"] is None

    assert body["asr"]["name"] == "fake"
    assert body["asr"]["tasks"] == ["transcribe"]
    languages = ["de", "en", "es"]
    assert body["mt"] == {"name": "nllb-200-tiny", "sources": languages, "targets": languages}
    assert {"asr": listed["asr"], "mt": listed["mt"]} == body


async def test_each_final_is_followed_by_one_translation_per_target(
    make_server: Any, nllb: CT2Translator
) -> None:
    # A slow model: if the emitter did not wait for a final's translations, final n+1 would overtake them.
    spy = SpyEngine(nllb, delay=0.1)
    server = await make_server(asr_engine=NumberingAsr(), mt_engine=spy)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"translate_to": ["es", "de"]})
        async with stream:
            await send_audio(stream, speech(*UTTERANCES))
            await stream.close_session()
            events = await events_until_closed(stream)

    finals = check_results(events, ["es", "de"], spy)
    assert len(finals) == len(UTTERANCES), "one final per utterance"
    assert len({f["text"] for f in finals}) == len(finals)
    assert events[-1]["finals"] == len(finals)
    # each final's text went to the model once per target, and nothing else did
    sent = sorted((c.target, t) for c in spy.calls for t in c.texts)
    assert sent == sorted((t, f["text"]) for f in finals for t in ("es", "de"))


@pytest.mark.parametrize("targets", [["fr"], ["es", "xx"]])
async def test_unsupported_target_is_refused_at_session_start(
    make_server: Any, nllb: CT2Translator, targets: list[str]
) -> None:
    server = await make_server(asr_engine=FakeAsr(), mt_engine=SpyEngine(nllb))
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        with pytest.raises(ClientError) as info:
            await client.create_session({"translate_to": targets})
    assert (info.value.status, info.value.code) == (400, "unsupported_language")
    assert targets[-1] in info.value.message


async def test_translation_needs_an_mt_model(make_server: Any) -> None:
    server = await make_server(asr_engine=FakeAsr())
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        with pytest.raises(ClientError) as info:
            await client.create_session({"translate_to": ["es"]})
    assert (info.value.status, info.value.code) == (400, "unsupported_language")


async def test_unsupported_target_in_session_update_keeps_the_old_config(
    make_server: Any, nllb: CT2Translator
) -> None:
    spy = SpyEngine(nllb)
    server = await make_server(asr_engine=NumberingAsr(), mt_engine=spy)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"translate_to": ["es", "de"]})
        async with stream:
            await stream.update(translate_to=["fr"])
            refused = await events_until(stream, lambda ev: any(e["type"] == "error" for e in ev))
            # the session goes on with es + de
            await send_audio(stream, speech("en_utt1.wav"))
            first = await events_until(
                stream, lambda ev: sum(e["type"] == "translation.final" for e in ev) == 2
            )
            # a valid update still applies afterwards: the refused one did not break the session
            await stream.update(translate_to=["de"])
            await send_audio(stream, speech("en_utt2.wav"))
            await stream.close_session()
            rest = await events_until_closed(stream)

    error = next(e for e in refused if e["type"] == "error")
    assert error["code"] == "unsupported_language"
    assert "fr" in error["message"]
    assert not any(e["type"] == "session.closed" for e in refused)
    assert len(check_results(first, ["es", "de"], spy)) == 1
    assert len(check_results(rest, ["de"], spy, first_seq=2)) == 1
    assert rest[-1]["reason"] == "client_closed"


async def test_jobs_from_concurrent_sessions_share_model_calls(make_server: Any, nllb: CT2Translator) -> None:
    sessions = 4
    # a model call takes a while, so jobs arriving while one runs queue up for the next batch
    spy = SpyEngine(nllb, delay=0.05)
    server = await make_server(asr_engine=NumberingAsr(), mt_engine=spy)
    together = asyncio.Barrier(sessions)

    async def one_session(client: StreamerClient) -> list[dict[str, Any]]:
        stream = await client.connect({"translate_to": ["es"], "interim_results": False})
        async with stream:
            await send_audio(stream, speech("en_utt1.wav", gap_s=0.0))
            await together.wait()
            await stream.close_session()  # ends every utterance at the same moment
            return await events_until_closed(stream)

    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        per_session = await asyncio.gather(*(one_session(client) for _ in range(sessions)))

    finals = [check_results(events, ["es"], spy) for events in per_session]
    assert [len(f) for f in finals] == [1] * sessions
    sizes = [len(c.texts) for c in spy.calls]
    assert max(sizes) > 1, f"no model call held more than one session's text: {sizes}"
    assert sum(sizes) == sessions, "every final's text reached the model exactly once"
    assert {(c.source, c.target) for c in spy.calls} == {("en", "es")}


async def test_a_repeated_text_is_translated_once(make_server: Any, nllb: CT2Translator) -> None:
    spy = SpyEngine(nllb)
    server = await make_server(asr_engine=FakeAsr(text="the red cat sees my old dog"), mt_engine=spy)
    events = []
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        # two finals with the same text in one session, then the same text again in another session
        for names in (("en_utt1.wav", "en_utt2.wav"), ("en_utt3.wav",)):
            stream = await client.connect({"translate_to": ["es", "de"]})
            async with stream:
                await send_audio(stream, speech(*names))
                await stream.close_session()
                events += await events_until_closed(stream)

    translations = [e for e in events if e["type"] == "translation.final"]
    assert len(translations) == 3 * 2
    assert sorted((c.target, c.texts) for c in spy.calls) == [
        ("de", ["the red cat sees my old dog"]),
        ("es", ["the red cat sees my old dog"]),
    ]
    for target in ("es", "de"):
        assert len({e["text"] for e in translations if e["language"] == target}) == 1


@pytest.mark.redis
async def test_the_redis_cache_is_shared_between_servers(
    make_server: Any, nllb: CT2Translator, redis_url: str
) -> None:
    text = f"the red cat {uuid.uuid4().hex}"  # new each run: a hit can only come from this run
    settings = make_settings(redis_url=redis_url)
    spies = [SpyEngine(nllb), SpyEngine(nllb)]
    servers = [await make_server(settings, asr_engine=FakeAsr(text=text), mt_engine=spy) for spy in spies]
    translations = []
    try:
        for server in servers:
            async with StreamerClient(base_url(server), api_key=API_KEY) as client:
                stream = await client.connect({"translate_to": ["es"]})
                async with stream:
                    await send_audio(stream, speech("en_utt1.wav"))
                    await stream.close_session()
                    events = await events_until_closed(stream)
            translations += [e["text"] for e in events if e["type"] == "translation.final"]
    finally:
        cleaner = aioredis.Redis.from_url(redis_url)
        await cleaner.delete("streamer:mt:" + cache_key(nllb.name, "en", "es", text))
        await cleaner.aclose()

    assert [c.texts for c in spies[0].calls] == [[text]]
    assert spies[1].calls == [], "the second server found the first one's translation in Redis"
    assert len(translations) == 2 and translations[0] == translations[1]


async def test_a_failed_translation_delivers_the_transcript_and_says_so(
    make_server: Any, nllb: CT2Translator
) -> None:
    server = await make_server(asr_engine=FakeAsr(), mt_engine=SpyEngine(nllb, fail=True))
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"translate_to": ["es"]})
        async with stream:
            await send_audio(stream, speech("en_utt1.wav"))
            await stream.close_session()
            events = await events_until_closed(stream)

    kinds = [e["type"] for e in events if e["type"] in ("transcript.final", "translation.final", "error")]
    assert kinds == ["transcript.final", "error"]
    error = next(e for e in events if e["type"] == "error")
    assert error["code"] == "model_unavailable" and error["retryable"] is True
    assert events[-1]["reason"] == "client_closed"


@dataclass
class DetectingAsr(FakeAsr):
    """A multilingual fake that "detects" Japanese when the session does not name its language."""

    multilingual: bool = True

    def languages(self) -> frozenset[str]:
        return frozenset({"en", "ja"})

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        return [AsrResult(self.text, r.language or "ja", avg_logprob=-0.1) for r in requests]


async def test_a_detected_language_the_model_lacks_is_refused_without_tripping_the_breaker(
    make_server: Any, nllb: CT2Translator
) -> None:
    # With language=null only the targets can be checked at session start; the source is known per final.
    spy = SpyEngine(nllb)
    server = await make_server(asr_engine=DetectingAsr(), mt_engine=spy)
    utterances = ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav", "en_utt1.wav")  # more than the breaker allows
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"translate_to": ["es"]})
        async with stream:
            await send_audio(stream, speech(*utterances))
            await stream.close_session()
            detected = await events_until_closed(stream)
        # the model is fine: another session, in a language it has, is translated as usual
        stream = await client.connect({"language": "en", "translate_to": ["es"]})
        async with stream:
            await send_audio(stream, speech("en_utt2.wav"))
            await stream.close_session()
            english = await events_until_closed(stream)

    kinds = [e["type"] for e in detected if e["type"] in ("transcript.final", "translation.final", "error")]
    assert kinds == ["transcript.final", "error"] * len(utterances)
    errors = [e for e in detected if e["type"] == "error"]
    assert {e["code"] for e in errors} == {"unsupported_language"}
    assert "'ja'" in errors[0]["message"]
    assert len(check_results(english, ["es"], spy)) == 1
    assert [c.texts for c in spy.calls] == [["hello world"]], "only the English final reached the model"
