"""Word timestamps on protocol v1 (``word_timestamps: true``): CTranslate2 Whisper's alignment, batched with
the transcriptions, on the session's audio clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import events_until_closed, of_type, send_audio
from support import API_KEY, base_url, silence, to_bytes

from streamer.client import StreamerClient
from streamer.pipeline.align import AlignRequest, run_batch
from streamer.pipeline.asr import AsrEngine, AsrRequest
from streamer_bench.wer import words as normalized_words

from .conftest import Sentence

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]


async def test_finals_carry_words_inside_the_spoken_audio(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    lead = 1.0  # the words move with the session's clock, not the utterance's
    audio = to_bytes(np.concatenate([silence(lead), sentence.samples]))
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", "interim_results": False, "word_timestamps": True})
        await send_audio(stream, audio)
        await stream.close_session()
        events = await events_until_closed(stream)
    (final,) = of_type(events, "transcript.final")
    words = final["words"]
    assert [w["word"] for w in words] == final["text"].split()
    assert set(sentence.content_words) <= set(normalized_words(final["text"]))
    start_ms, end_ms = (lead + sentence.start_s) * 1000, (lead + sentence.end_s) * 1000
    for w in words:
        assert start_ms - 400 <= w["start_ms"] <= w["end_ms"] <= end_ms + 400, w
        assert 0 < w["probability"] <= 1
    assert [w["start_ms"] for w in words] == sorted(w["start_ms"] for w in words)
    # the first word is heard after the lead, the last ends near the sentence's end
    assert words[0]["start_ms"] >= lead * 1000 + 200


async def test_finals_leave_words_out_unless_asked(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await make_server()
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", "interim_results": False})
        await send_audio(stream, to_bytes(sentence.samples))
        await stream.close_session()
        events = await events_until_closed(stream)
    (final,) = of_type(events, "transcript.final")
    assert "words" not in final


def test_an_engine_without_alignment_answers_with_no_words_and_still_transcribes() -> None:
    engine = FakeAsr(text="hello there")
    audio = np.zeros(16000, dtype=np.float32)
    aligned, transcribed = run_batch(engine, [AlignRequest(audio, text="hello there"), AsrRequest(audio)])
    assert getattr(aligned, "words", None) == ()
    assert transcribed.text == "hello there"


def test_alignment_batches_several_finals_in_one_call(tiny_engine: AsrEngine, sentence: Sentence) -> None:
    audio = sentence.samples.astype(np.float32) / 32768.0
    text = "Please, keep your voice down."
    short = audio[: int(2.3 * 16000)]
    results = run_batch(
        tiny_engine,
        [AlignRequest(audio, language="en", text=text), AlignRequest(short, language="en", text=text)],
    )
    for result in results:
        spoken = [w.word for w in getattr(result, "words", ())]
        assert spoken == ["Please,", "keep", "your", "voice", "down."]
    # the same words in a shorter window: the same times (padding does not move them)
    first, second = (getattr(r, "words", ()) for r in results)
    assert all(abs(a.start_ms - b.start_ms) <= 60 for a, b in zip(first, second, strict=True))
