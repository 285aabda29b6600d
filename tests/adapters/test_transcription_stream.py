"""``POST /v1/audio/transcriptions`` with ``stream=true``: ``transcript.text.delta`` events as the text
becomes stable, append-only, and ``transcript.text.done`` with the whole text and the token usage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent
from support import make_settings, read_pcm16, silence

from streamer.adapters.transcriptions import StreamedText, _answer
from streamer.adapters.upload import FOLLOW_LEAD_S, _Follow
from streamer.adapters.upload_form import Form
from streamer.protocol import SpeechStarted, SpeechStopped, TranscriptFinal, TranscriptPartial
from streamer_bench.wer import wer

from .test_transcriptions import _client, _wav

ServerFactory = Callable[..., Awaitable[TestServer]]


def _partial(segment_id: int, stable: str) -> TranscriptPartial:
    return TranscriptPartial(segment_id=segment_id, text=stable + " and more", stable_text=stable)


def _final(segment_id: int, text: str) -> TranscriptFinal:
    return TranscriptFinal(
        segment_id=segment_id, seq=segment_id, text=text, language="en", audio_start_ms=0, audio_end_ms=1000
    )


def test_deltas_grow_with_the_stable_text_and_join_utterances() -> None:
    streamed = StreamedText()
    deltas = [
        streamed.partial(_partial(1, "")),
        streamed.partial(_partial(1, "Every morning")),
        streamed.partial(_partial(1, "Every morning")),
        streamed.partial(_partial(1, "Every morning I walk")),
        streamed.final(_final(1, "Every morning I walk to the park.")),
        streamed.partial(_partial(1, "Every morning I walk to")),  # late: its utterance is final
        streamed.final(_final(2, "")),  # an utterance that said nothing
        streamed.partial(_partial(3, "Then we")),
        streamed.final(_final(3, "Then we cross the bridge.")),
    ]
    assert deltas == [
        "",
        "Every morning",
        "",
        " I walk",
        " to the park.",
        "",
        "",
        " Then we",
        " cross the bridge.",
    ]
    assert streamed.text == "".join(deltas) == "Every morning I walk to the park. Then we cross the bridge."


def test_a_later_utterance_waits_for_the_earlier_final() -> None:
    streamed = StreamedText()
    deltas = [
        streamed.partial(_partial(1, "We walk")),
        streamed.partial(_partial(2, "Then")),  # before utterance 1's final: held
        streamed.partial(_partial(2, "Then we come")),
        streamed.final(_final(1, "We walk home.")),
        streamed.partial(_partial(3, "Later")),  # utterance 2 is not final yet
        streamed.final(_final(2, "Then we come back.")),
        streamed.final(_final(3, "Later on.")),
    ]
    assert deltas == ["We walk", "", "", " home. Then we come", "", " back. Later", " on."]
    assert streamed.text == "".join(deltas) == "We walk home. Then we come back. Later on."


def test_a_final_that_rewrites_sent_words_keeps_them_and_adds_its_rest() -> None:
    streamed = StreamedText()
    sent = streamed.partial(_partial(1, "Okay. So we"))
    rest = streamed.final(_final(1, "Okay, so we went home."))
    assert (sent, rest) == ("Okay. So we", " went home.")
    assert streamed.text == "Okay. So we went home."
    dropped = StreamedText()  # partials sent words, then the final was dropped (empty)
    assert dropped.partial(_partial(1, "Hmm")) == "Hmm"
    assert dropped.final(_final(1, "")) == ""
    assert dropped.text == "Hmm"


def test_a_dropped_utterance_adds_no_space_to_either_answer() -> None:
    """An utterance dropped as noise ends in an empty final: the whole answer and the stream both skip it."""
    finals = [_final(1, "We walk home."), _final(2, ""), _final(3, "Later on.")]
    whole = _answer(Form(response_format="text"), finals, 3.0)
    streamed = StreamedText()
    deltas = [streamed.final(f) for f in finals]
    assert whole.text == "We walk home. Later on.\n"
    assert "".join(deltas) == streamed.text == "We walk home. Later on."


async def test_streamed_audio_waits_for_the_partials_of_an_utterance_split_at_its_length() -> None:
    follow = _Follow()
    for message in [
        SpeechStarted(segment_id=1, audio_start_ms=0),
        SpeechStopped(segment_id=1, audio_end_ms=15_000),  # split at the maximum length: speech goes on
        SpeechStarted(segment_id=2, audio_start_ms=15_000),
        _final(1, "the first half"),  # the first half's final, after the split
    ]:
        follow.heard(message)
    await follow.pushed(FOLLOW_LEAD_S / 2)  # within the lead
    waiting = asyncio.create_task(follow.pushed(FOLLOW_LEAD_S / 2))
    await asyncio.sleep(0)
    assert not waiting.done()
    follow.heard(_partial(2, ""))
    await asyncio.wait_for(waiting, 5)
    follow.heard(SpeechStopped(segment_id=2, audio_end_ms=16_000))
    await asyncio.wait_for(follow.pushed(2 * FOLLOW_LEAD_S), 5)  # silence is not held back


@pytest.mark.slow
async def test_a_long_utterance_streams_as_its_text_becomes_stable(make_server: ServerFactory) -> None:
    """A 26 s run-on sentence on tiny.en: more deltas than utterances, the deltas join to ``done.text``,
    whose words are the non-streamed answer's (but for a word a final rewrote after it was sent).

    Paced at 10x real time: at 30x, on a 2-core machine with other work running, the partials of an
    utterance could all come too late (they are best effort, spaced out under load) and each utterance
    was one delta (1 run in 3 failed with one busy process beside it; none in 8 at 10x with one or two).
    The sentence cut is off: it would end this run-on sentence at a pause whose decode ends a sentence,
    and whether that decode is back before the pause is over depends on the machine, so the two answers
    could be cut apart differently (the cut has its own tests, tests/session/test_turns.py).
    """
    server = await make_server(
        make_settings(realtime_burst_s=10.0, upload_realtime_factor=10.0, sentence_cut_s=0)
    )
    audio = _wav(np.concatenate([read_pcm16("en_long.wav"), silence(0.8)]))
    async with _client(server) as client:
        whole = await client.audio.transcriptions.create(
            model="whisper-1", file=("long.wav", audio), response_format="verbose_json"
        )
        events = [
            event
            async for event in await client.audio.transcriptions.create(
                model="whisper-1", file=("long.wav", audio), stream=True
            )
        ]
    *deltas, done = events
    assert all(isinstance(e, TranscriptionTextDeltaEvent) for e in deltas)
    assert isinstance(done, TranscriptionTextDoneEvent)
    utterances = len(whole.segments or [])
    assert len(deltas) > utterances, [e.delta for e in deltas if isinstance(e, TranscriptionTextDeltaEvent)]
    assert "".join(e.delta for e in deltas if isinstance(e, TranscriptionTextDeltaEvent)) == done.text
    # the same words as the whole answer, but for words the partials agreed on that the final rewrote
    # (sent text is never taken back): at most a few
    assert wer(whole.text, done.text) <= 0.05, (whole.text, done.text)
    assert done.usage is not None and done.usage.type == "tokens"
    assert done.usage.input_tokens == round(50 * (read_pcm16("en_long.wav").size / 16000 + 0.8))
    assert done.usage.output_tokens >= len(done.text.split())
