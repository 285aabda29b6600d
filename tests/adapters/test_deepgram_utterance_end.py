"""Deepgram's ``UtteranceEnd`` comes after ``utterance_end_ms`` of audio without a word, measured from the
last finalized word (issue 21 item 2): not after every final, and never inside a quick turn."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import numpy as np
import pytest
from support import API_KEY, read_pcm16, silence

from streamer.adapters.deepgram.render import ResultRenderer
from streamer.pipeline.textformat import TextFormat
from streamer.protocol import ServerMessage, SpeechStarted, SpeechStopped, TranscriptFinal, Word

from .conftest import Sentence
from .test_deepgram import ServerFactory, _client, _collect, _stream
from .test_voice_agents import noise_burst, whole

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)


class Clock:
    """The session's audio clock, moved by hand."""

    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def _renderer(utterance_end_ms: int | None, clock: Clock) -> ResultRenderer:
    return ResultRenderer(
        request_id="r",
        model_name="m",
        model_uuid="u",
        text_format=TextFormat(punctuate=True),
        interim_results=True,
        vad_events=False,
        utterance_end_ms=utterance_end_ms,
        audio_ms=clock,
    )


def _utterance(
    segment_id: int, start_ms: int, end_ms: int, text: str, pause_ms: int = 200
) -> list[ServerMessage]:
    """An utterance whose one word ends ``pause_ms`` before the utterance does (its endpoint)."""
    word_end = end_ms - pause_ms
    words = [Word(word=text, start_ms=start_ms + 100, end_ms=word_end, probability=0.9)] if text else []
    return [
        SpeechStarted(segment_id=segment_id, audio_start_ms=start_ms),
        SpeechStopped(segment_id=segment_id, audio_end_ms=end_ms),
        TranscriptFinal(
            segment_id=segment_id,
            seq=segment_id,
            text=text,
            language="en",
            audio_start_ms=start_ms,
            audio_end_ms=end_ms,
            words=words,
            end_reason="silence",
        ),
    ]


def _check(renderer: ResultRenderer, heard_ms: int) -> list[str]:
    """A gap check queued when ``heard_ms`` of audio had been pushed, rendered in its turn."""
    check = renderer.gap_check(heard_ms)
    if renderer.utterance_end_ms is None:
        assert check is None  # nothing to check: nothing queued
        return []
    assert check is not None
    assert renderer.gap_check(heard_ms) is None  # one queued at a time
    return check()


def _kinds(frames: list[str]) -> list[str]:
    return [json.loads(f)["type"] for f in frames]


# (utterance_end_ms, audio heard after the word "hello" ended at 1300 ms, UtteranceEnd sent)
GAPS = [
    (None, 5000, False),  # not asked for
    (1000, 900, False),  # the gap is not over
    (1000, 1000, True),
    (2000, 1500, False),  # the setting is honoured, not just "after a final"
    (2000, 2000, True),
]


@pytest.mark.parametrize(("utterance_end_ms", "gap_ms", "sent"), GAPS)
def test_utterance_end_follows_the_configured_gap_after_the_last_word(
    utterance_end_ms: int | None, gap_ms: int, sent: bool
) -> None:
    clock = Clock()
    renderer = _renderer(utterance_end_ms, clock)
    frames = [f for m in _utterance(1, 1000, 1500, "hello") for f in renderer.render(m)]
    assert _kinds(frames) == ["Results"]  # the final alone: its endpoint is not the word gap
    heard = 1300 + gap_ms
    clock.ms = heard
    ends = [json.loads(f) for f in _check(renderer, heard)]
    assert ends == ([{"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 1.3}] if sent else [])
    if sent:
        assert _check(renderer, heard + 5000) == []  # one per gap


def test_an_utterance_begun_inside_the_gap_holds_it_open_and_noise_does_not() -> None:
    clock = Clock()
    renderer = _renderer(1000, clock)
    for m in _utterance(1, 1000, 1500, "hello"):
        renderer.render(m)
    # the speaker goes on 500 ms later: no gap, whatever the clock says while the utterance is open
    renderer.render(SpeechStarted(segment_id=2, audio_start_ms=1800))
    assert _check(renderer, 4000) == []
    # it was noise (an empty final): the gap since "hello" (1300 ms; 4000 ms heard) is over
    frames = [json.loads(f) for f in renderer.render(_utterance(2, 1800, 2600, "")[-1])]
    assert [f["type"] for f in frames] == ["Results", "UtteranceEnd"]
    assert frames[1]["last_word_end"] == 1.3


def test_a_final_that_comes_after_the_gap_is_followed_by_utterance_end() -> None:
    # endpointing longer than utterance_end_ms: the gap is over when the final arrives
    clock = Clock()
    renderer = _renderer(1000, clock)
    frames = [f for m in _utterance(1, 1000, 3000, "hello", pause_ms=1200) for f in renderer.render(m)]
    assert _kinds(frames) == ["Results", "UtteranceEnd"]
    assert json.loads(frames[1])["last_word_end"] == 1.8


# ---- with the official SDK and the real model


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")
@pytest.mark.parametrize("utterance_end_ms", [1000, 2000])
async def test_the_sdk_gets_utterance_end_after_its_gap_only(
    make_server: ServerFactory, sentence: Sentence, utterance_end_ms: int
) -> None:
    # the sentence (0.5-2.1 s) and 1.4 s of silence after it
    server = await make_server()
    async with (
        _client(server, api_key=API_KEY) as client,
        client.listen.v1.connect(
            model="nova-3",
            encoding="linear16",
            sample_rate=16000,
            interim_results="true",
            endpointing=300,
            utterance_end_ms=utterance_end_ms,
        ) as socket,
    ):
        receiving = asyncio.create_task(_collect(socket))
        await _stream(socket, sentence.samples)
        await socket.send_close_stream()
        messages = await receiving
    finals = [m for m in messages if m.type == "Results" and m.is_final and m.channel.alternatives[0].words]
    ends = [m for m in messages if m.type == "UtteranceEnd"]
    assert len(finals) == 1
    if utterance_end_ms == 2000:
        assert ends == []  # 1.4 s without a word is not 2 s
        return
    assert len(ends) == 1 and messages.index(ends[0]) > messages.index(finals[0])
    assert ends[0].channel == [0, 1]
    assert ends[0].last_word_end == finals[0].channel.alternatives[0].words[-1].end


class UtteranceEndAgent:
    """A Deepgram voice agent that ends the user's turn at ``UtteranceEnd`` (the end of a turn Deepgram
    recommends where noise keeps ``speech_final`` from coming): finals gathered until then."""

    def __init__(self) -> None:
        self.turns: asyncio.Queue[str] = asyncio.Queue()
        self.heard: list[str] = []

    async def listen(self, socket: Any) -> None:
        async for message in socket:
            if message.type == "Results" and message.is_final:
                if transcript := message.channel.alternatives[0].transcript:
                    self.heard.append(transcript)
            elif message.type == "UtteranceEnd" and self.heard:
                self.turns.put_nowait(" ".join(self.heard))
                self.heard = []


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")
async def test_a_voice_agent_waiting_for_utterance_end_gets_whole_quick_turns(
    make_server: ServerFactory,
) -> None:
    # a turn of two sentences 0.5 s apart (each its own final at endpointing=300), noise, a second turn
    first, second, third = (read_pcm16(n) for n in ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav"))
    server = await make_server()
    agent = UtteranceEndAgent()
    async with (
        _client(server, api_key=API_KEY) as client,
        client.listen.v1.connect(
            model="nova-3",
            encoding="linear16",
            sample_rate=16000,
            interim_results="true",
            punctuate="true",
            endpointing=300,
            utterance_end_ms=1000,
        ) as socket,
    ):
        listening = asyncio.create_task(agent.listen(socket))
        try:
            await _stream(socket, np.concatenate([first, silence(0.5), second, silence(1.5)]))
            async with asyncio.timeout(30):
                turn = await agent.turns.get()
            await _stream(socket, np.concatenate([noise_burst(0), silence(1.5), third, silence(1.5)]))
            async with asyncio.timeout(30):
                last = await agent.turns.get()
            await socket.send_close_stream()
            async with asyncio.timeout(30):
                await listening
        finally:
            listening.cancel()
    assert whole(turn, "en_utt1.wav") and whole(turn, "en_utt2.wav"), turn
    assert whole(last, "en_utt3.wav"), last
    assert agent.turns.empty() and not agent.heard
