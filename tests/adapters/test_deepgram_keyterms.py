"""Deepgram ``keyterm`` and ``keywords`` with the official deepgram-sdk, live and pre-recorded: the words go
into the model's prompt (tiny.en follows a lowercase prompt's style, which makes it visible), and a
suppressing ``keywords`` intensifier is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from multidict import MultiDict
from support import API_KEY, read_pcm16, silence, to_bytes

from streamer.adapters.deepgram.options import boosted
from streamer.errors import ConfigError

from .test_deepgram import ServerFactory, _client
from .test_deepgram_prerecorded import ApiError, encode

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]

SAID = "Please open the window and let some fresh air into the room."
LOWERCASE = ["hello", "there", "how", "are", "you", "doing", "i", "am", "fine", "thanks"]


def _speech() -> np.ndarray:
    return np.concatenate([silence(0.3), read_pcm16("en_utt2.wav"), silence(1.0)])


async def _file(server: Any, **options: Any) -> str:
    async with _client(server, api_key=API_KEY) as client:
        response: Any = await client.listen.v1.media.transcribe_file(
            request=encode(_speech(), 16000, "wav"), model="nova-3", punctuate=True, **options
        )
    return str(response.results.channels[0].alternatives[0].transcript)


async def test_prerecorded_keyterm_and_keywords_reach_the_model(make_server: ServerFactory) -> None:
    server = await make_server()
    assert await _file(server) == SAID
    assert await _file(server, keyterm=LOWERCASE) != SAID
    assert await _file(server, keywords=[f"{w}:2" for w in LOWERCASE]) != SAID
    with pytest.raises(ApiError) as suppressed:
        await _file(server, keywords=["window:-5"])
    assert suppressed.value.status_code == 400
    assert "intensifier" in str(suppressed.value.body)


async def test_live_keyterm_reaches_the_model(make_server: ServerFactory) -> None:
    server = await make_server()
    transcripts = []
    for extra in ({}, {"keyterm": LOWERCASE}):
        async with (
            _client(server, api_key=API_KEY) as client,
            client.listen.v1.connect(
                model="nova-3", encoding="linear16", sample_rate=16000, punctuate="true", **extra
            ) as socket,
        ):
            messages: list[Any] = []

            async def collect(socket: Any = socket, messages: list[Any] = messages) -> None:
                async with asyncio.timeout(60):
                    async for message in socket:
                        messages.append(message)

            receiving = asyncio.create_task(collect())
            audio = _speech()
            for i in range(0, audio.size, 1600):
                await socket.send_media(to_bytes(audio[i : i + 1600]))
            await socket.send_close_stream()
            await receiving
        said = [m.channel.alternatives[0].transcript for m in messages if m.type == "Results" and m.is_final]
        transcripts.append(" ".join(t for t in said if t))
    assert transcripts[0] == SAID
    assert transcripts[1] != SAID


def _query(*pairs: tuple[str, str]) -> MultiDict[str]:
    return MultiDict(pairs)


def test_keyterms_and_keywords_are_read_in_order_once_each() -> None:
    query = _query(
        ("keyterm", "Quilter"), ("keywords", "kubectl:2"), ("keywords", "Quilter"), ("keywords", "a:0.5")
    )
    assert boosted(query) == ("Quilter", "kubectl", "a")


@pytest.mark.parametrize("bad", ["word:-1", "word:0", "word:nan", "word:inf", "word:loud", ":2", "x" * 101])
def test_a_keyword_that_cannot_be_honoured_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        boosted(_query(("keywords", bad)))
