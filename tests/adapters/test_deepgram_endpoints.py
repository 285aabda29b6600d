"""Deepgram's ``speech_final`` marks an endpoint (the speaker paused), never a split at the maximum
utterance length nor the end of the stream, with the official deepgram-sdk against a real server (issue 21
item 2). ``UtteranceEnd`` (a gap without words) does not follow a split either: the speech goes on."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import numpy as np
import pytest
from support import make_settings

from .conftest import Sentence
from .test_deepgram import ServerFactory, _client, _collect, _stream

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)

from support import API_KEY

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]


async def _listen(server: Any, sentence: Sentence, *, finalize: bool) -> list[Any]:
    async with (
        _client(server, api_key=API_KEY) as client,
        client.listen.v1.connect(
            model="nova-3",
            encoding="linear16",
            sample_rate=16000,
            channels=1,
            interim_results="false",
            utterance_end_ms=1000,
        ) as socket,
    ):
        receiving = asyncio.create_task(_collect(socket))
        await _stream(socket, sentence.samples)
        if finalize:
            await socket.send_finalize()
        await socket.send_close_stream()
        return await receiving


def _finals(messages: list[Any]) -> list[Any]:
    return [m for m in messages if m.type == "Results" and m.is_final and not m.from_finalize]


async def test_a_split_at_the_maximum_length_is_final_but_not_speech_final(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    # the sentence three times without a gap (5 s of speech, no pause), then its silence: at most 3 s per
    # utterance splits it twice, inside the speech
    rate = 16000
    speech = sentence.samples[int((sentence.start_s - 0.05) * rate) : int((sentence.end_s + 0.05) * rate)]
    lead, tail = sentence.samples[: int(sentence.start_s * rate)], sentence.samples[int(2.2 * rate) :]
    samples = np.concatenate([lead, speech, speech, speech, tail])
    server = await make_server(make_settings(max_utterance_s=3.0))
    messages = await _listen(server, Sentence(samples, "", [], 0.0, 0.0), finalize=True)
    finals = [f for f in _finals(messages) if f.channel.alternatives[0].transcript]
    # split at the quietest point of the last 2 s, the seams: each copy is its own final
    assert len(finals) == 3, [(f.channel.alternatives[0].transcript, f.start) for f in finals]
    assert [f.speech_final for f in finals] == [False, False, True]
    # one gap without words, after the real end only
    kinds = [m.type for m in messages]
    assert kinds.count("UtteranceEnd") == 1
    assert kinds.index("UtteranceEnd") > messages.index(finals[-1])


async def test_speech_the_stream_ends_is_final_but_not_speech_final(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    # the stream closes inside the sentence, before any pause ends it
    cut = Sentence(
        sentence.samples[: int(1.6 * 16000)],
        sentence.text,
        sentence.content_words,
        sentence.start_s,
        sentence.end_s,
    )
    server = await make_server()
    finals = _finals(await _listen(server, cut, finalize=False))
    assert len(finals) == 1 and finals[0].channel.alternatives[0].transcript
    assert finals[0].speech_final is False
