"""Deepgram live ``diarize=true`` with the official deepgram-sdk on the committed two-voice dialogue,
against a real server (tiny.en, Silero, the GE2E encoder on its worker)."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp.test_utils import TestServer
from encoders import encode
from support import API_KEY, make_settings, silence, skip_or_fail, to_bytes

from streamer.pipeline.speakers_weights import default_wheel_path

from .dialogue import best_mapping_share, two_voices

with warnings.catch_warnings():
    # deepgram-sdk imports websockets' legacy client, which websockets deprecates
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]

ServerFactory = Callable[..., Awaitable[TestServer]]
UNTIL_MS = 13_300  # four turns, the second a reply 305 ms after the first


@contextlib.asynccontextmanager
async def _client(server: TestServer) -> AsyncIterator[AsyncDeepgramClient]:
    base, ws = f"http://{server.host}:{server.port}", f"ws://{server.host}:{server.port}"
    environment = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    async with httpx.AsyncClient(timeout=60) as http:
        yield AsyncDeepgramClient(environment=environment, httpx_client=http, api_key=API_KEY)


async def _collect(socket: Any) -> list[Any]:
    messages: list[Any] = []
    async with asyncio.timeout(60):
        async for message in socket:
            messages.append(message)
    return messages


async def test_the_sdk_gets_speaker_labelled_words_on_a_live_two_speaker_stream(
    make_server: ServerFactory,
) -> None:
    if not default_wheel_path().is_file():
        skip_or_fail("the speaker encoder's weights are not in the cache (run scripts/setup.sh)")
    dialogue = two_voices(UNTIL_MS)
    server = await make_server()
    async with (
        _client(server) as client,
        client.listen.v1.connect(
            model="nova-3", encoding="linear16", sample_rate=16000, punctuate="true", diarize="true"
        ) as socket,
    ):
        receiving = asyncio.create_task(_collect(socket))
        step = 1600
        for i in range(0, dialogue.samples.size, step):
            await socket.send_media(to_bytes(dialogue.samples[i : i + step]))
        # a pause ends the last utterance (speech the stream's end cuts off is final, not speech_final)
        await socket.send_media(to_bytes(silence(1.0)))
        await socket.send_close_stream()
        messages = await receiving
    finals = [
        m for m in messages if m.type == "Results" and m.is_final and m.channel.alternatives[0].transcript
    ]
    words = [w for m in finals for w in m.channel.alternatives[0].words]
    assert words and all(isinstance(w.speaker, int) for w in words)
    # as Deepgram live: no speaker_confidence (it is pre-recorded only)
    assert all(getattr(w, "speaker_confidence", None) is None for w in words)
    assert {w.speaker for w in words} >= {0, 1}
    pairs = [(dialogue.speaker_at((w.start + w.end) * 500), w.speaker) for w in words]
    assert best_mapping_share(pairs) >= 0.8, pairs
    # each Results is one voice
    assert all(len({w.speaker for w in m.channel.alternatives[0].words}) == 1 for m in finals)
    # a reply inside one utterance is a final of its own, but not the utterance's end: as Deepgram does
    # at a change of speaker, speech_final waits for the last part
    assert any(m.speech_final is False for m in finals), [(m.speech_final, m.start) for m in finals]
    assert finals[-1].speech_final is True


async def test_diarize_without_the_encoder_is_refused_in_deepgrams_shape(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(speaker_weights="off"))
    url = f"http://{server.host}:{server.port}/v1/listen?diarize=true&encoding=linear16&sample_rate=16000"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": f"Token {API_KEY}"}) as r:
            body = await r.json()
    assert r.status == 400
    assert body["err_code"] == "Bad Request" and "diarize" in body["err_msg"]  # Deepgram's word for a 400


async def test_prerecorded_diarize_labels_words_and_utterances(make_server: ServerFactory) -> None:
    if not default_wheel_path().is_file():
        skip_or_fail("the speaker encoder's weights are not in the cache (run scripts/setup.sh)")
    dialogue = two_voices(UNTIL_MS)
    server = await make_server()
    async with _client(server) as client:
        response: Any = await client.listen.v1.media.transcribe_file(
            request=encode(dialogue.samples, 16000, "wav"), diarize=True, utterances=True, punctuate=True
        )
    (channel,) = response.results.channels
    words = channel.alternatives[0].words
    assert words and all(isinstance(w.speaker, int) for w in words)
    pairs = [(dialogue.speaker_at((w.start + w.end) * 500), w.speaker) for w in words]
    assert best_mapping_share(pairs) >= 0.8, pairs
    utterances = response.results.utterances
    assert {u.speaker for u in utterances} >= {0, 1}
    for u in utterances:
        assert {w.speaker for w in u.words} == {u.speaker}
        assert all(0 <= w.speaker_confidence <= 1 for w in u.words)
