"""Deepgram's formatting options (``smart_format``, ``numerals``, ``redact``, ``profanity_filter``,
``filler_words``) with the official deepgram-sdk, live and pre-recorded: honoured in transcripts and
words, or refused before any audio; never ignored (issue 21 item 8)."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import pytest
from fakes import FakeAsr
from support import API_KEY

from streamer.adapters.deepgram.render import ResultRenderer
from streamer.pipeline.textformat import TextFormat
from streamer.protocol import SpeechStarted, SpeechStopped, TranscriptFinal, TranscriptPartial, Word

from .conftest import Sentence
from .test_deepgram import ServerFactory, _client, _collect, _stream
from .test_deepgram_prerecorded import _client as _rest_client

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client
    import deepgram.listen.v1.media.client  # noqa: F401
    from deepgram.core.api_error import ApiError

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]

SAID = "Um, card 4111 2345 6789 0123, twenty five dollars, damn."  # few words, none repeated: believable


async def _live(server: Any, sentence: Sentence, **options: Any) -> list[Any]:
    async with (
        _client(server, api_key=API_KEY) as client,
        client.listen.v1.connect(
            model="nova-3", encoding="linear16", sample_rate=16000, interim_results="true", **options
        ) as socket,
    ):
        receiving = asyncio.create_task(_collect(socket))
        await _stream(socket, sentence.samples)
        await socket.send_close_stream()
        return await receiving


def _transcripts(messages: list[Any], final: bool) -> list[str]:
    return [
        m.channel.alternatives[0].transcript
        for m in messages
        if m.type == "Results" and m.is_final is final and m.channel.alternatives[0].transcript
    ]


async def test_live_results_are_redacted_masked_and_smart_formatted(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server(asr_engine=FakeAsr(text=SAID))
    messages = await _live(server, sentence, smart_format="true", redact="pci", profanity_filter="true")
    assert _transcripts(messages, final=True) == ["card [CREDIT_CARD], $25, ****."]
    assert not any("4111" in t or "damn" in t for t in _transcripts(messages, final=False))


async def test_live_options_not_asked_for_leave_the_transcript_as_said(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server(asr_engine=FakeAsr(text=SAID))
    messages = await _live(server, sentence, punctuate="true")
    # Deepgram's default strips "uh" and "um"; nothing else changes
    assert _transcripts(messages, final=True) == [SAID.removeprefix("Um, ")]


async def test_live_numerals_and_redacted_numbers(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await make_server(asr_engine=FakeAsr(text="I have twenty five cats and 3 dogs."))
    assert _transcripts(await _live(server, sentence, numerals="true"), final=True) == [
        "i have 25 cats and 3 dogs"
    ]
    assert _transcripts(await _live(server, sentence, redact="numbers"), final=True) == [
        "i have twenty five cats and [number] dogs"  # not numerals: only what is written as a number
    ]


@pytest.mark.parametrize("value", ["pii", "phi", "email_address"])
async def test_a_redaction_this_server_cannot_do_is_refused_before_the_upgrade(
    make_server: ServerFactory, value: str
) -> None:
    server = await make_server(asr_engine=FakeAsr())
    async with _client(server, api_key=API_KEY) as client:
        with pytest.raises(ApiError) as refused:
            async with client.listen.v1.connect(
                model="nova-3", encoding="linear16", sample_rate=16000, redact=value
            ):
                pass
    assert refused.value.status_code == 400


async def test_prerecorded_results_and_utterances_are_formatted(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server(asr_engine=FakeAsr(text=SAID))
    async with _rest_client(server) as client:
        response: Any = await client.listen.v1.media.transcribe_file(
            request=sentence.samples.tobytes(),
            model="nova-3",
            encoding="linear16",
            smart_format=True,
            redact="pci",
            profanity_filter=True,
            utterances=True,
            filler_words=False,
            request_options={"additional_query_parameters": {"sample_rate": 16000}},
        )
    expected = "card [CREDIT_CARD], $25, ****."
    assert response.results.channels[0].alternatives[0].transcript == expected
    assert [u.transcript for u in response.results.utterances] == [expected]


async def test_prerecorded_filler_words_true_is_refused(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server(asr_engine=FakeAsr(text=SAID))
    async with _rest_client(server) as client:
        with pytest.raises(ApiError) as refused:
            await client.listen.v1.media.transcribe_file(
                request=sentence.samples.tobytes(),
                model="nova-3",
                encoding="linear16",
                filler_words=True,
                request_options={"additional_query_parameters": {"sample_rate": 16000}},
            )
    assert refused.value.status_code == 400
    assert "filler_words=true is not supported" in json.dumps(refused.value.body)  # not "unknown"


# ---- words: formatted as the transcript, keeping their time


def _word(word: str, start_ms: int, probability: float = 0.9) -> Word:
    return Word(word=word, start_ms=start_ms, end_ms=start_ms + 250, probability=probability)


def test_formatted_words_keep_the_time_of_what_was_said() -> None:
    renderer = ResultRenderer(
        request_id="r",
        model_name="m",
        model_uuid="u",
        text_format=TextFormat(punctuate=True, smart_format=True, redact=frozenset({"pci"})),
        interim_results=True,
        vad_events=False,
        utterance_end_ms=None,
        audio_ms=lambda: 9000,
    )
    said = [" Card", " 4111", " 1111", " 1111", " 1111,", " twenty", " five", " dollars."]
    words = [_word(w, 1000 + 300 * i, 0.9 - 0.01 * i) for i, w in enumerate(said)]
    final = TranscriptFinal(
        segment_id=1,
        seq=1,
        text="".join(said),
        language="en",
        audio_start_ms=900,
        audio_end_ms=3600,
        words=words,
        end_reason="silence",
    )
    renderer.render(SpeechStarted(segment_id=1, audio_start_ms=900))
    # an interim result is formatted as its final will be: nothing it redacts leaks early
    (interim,) = [json.loads(f) for f in renderer.render(TranscriptPartial(segment_id=1, text=final.text))]
    assert interim["channel"]["alternatives"][0]["transcript"] == "Card [CREDIT_CARD], $25."
    renderer.render(SpeechStopped(segment_id=1, audio_end_ms=3600))
    (result,) = [json.loads(f) for f in renderer.render(final)]
    alternative = result["channel"]["alternatives"][0]
    assert alternative["transcript"] == "Card [CREDIT_CARD], $25."
    assert [(w["word"], w["punctuated_word"], w["start"], w["end"]) for w in alternative["words"]] == [
        ("card", "Card", 1.0, 1.25),
        ("[credit_card]", "[CREDIT_CARD],", 1.3, 2.45),  # from the first group's start to the last's end
        ("$25", "$25.", 2.5, 3.35),
    ]
    assert alternative["words"][1]["confidence"] == 0.86  # the lowest of the words it hides
