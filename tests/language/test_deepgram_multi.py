"""Deepgram ``language=multi`` (and ``language_hint``) with the official deepgram-sdk against a real server
with the ``base`` model, on the bilingual clip: live results and a pre-recorded file."""

from __future__ import annotations

import asyncio
import contextlib
import io
import warnings
import wave
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer
from support import API_KEY

from streamer.pipeline.asr import AsrEngine
from streamer_bench.bilingual import Bilingual

from .conftest import bilingual_pcm

with warnings.catch_warnings():
    # deepgram-sdk imports websockets' legacy client, which websockets deprecates
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)
    from deepgram import AsyncDeepgramClient
    from deepgram.core.api_error import ApiError
    from deepgram.environment import DeepgramClientEnvironment

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]


@contextlib.asynccontextmanager
async def _client(server: TestServer) -> AsyncIterator[AsyncDeepgramClient]:
    base, ws = f"http://{server.host}:{server.port}", f"ws://{server.host}:{server.port}"
    environment = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    async with httpx.AsyncClient(timeout=120) as http:
        yield AsyncDeepgramClient(environment=environment, httpx_client=http, api_key=API_KEY)


async def _collect(socket: Any) -> list[Any]:
    messages: list[Any] = []
    async with asyncio.timeout(90):
        async for message in socket:
            messages.append(message)
    return messages


async def test_live_multi_results_carry_each_utterances_language(
    make_server: Any, base_engine: AsrEngine, bilingual: Bilingual
) -> None:
    server = await make_server(asr_engine=base_engine)
    pcm = bilingual_pcm()
    async with (
        _client(server) as client,
        client.listen.v1.connect(
            model="nova-3", encoding="linear16", sample_rate=16000, language="multi", punctuate="true"
        ) as socket,
    ):
        receiving = asyncio.create_task(_collect(socket))
        for i in range(0, len(pcm), 3200):
            await socket.send_media(pcm[i : i + 3200])
        await socket.send_close_stream()
        messages = await receiving
    finals = [
        m for m in messages if m.type == "Results" and m.is_final and m.channel.alternatives[0].transcript
    ]
    languages = [m.channel.alternatives[0].languages for m in finals]
    assert languages == [[u.language] for u in bilingual.utterances], languages


async def test_prerecorded_multi_detects_and_hints_restrict(
    make_server: Any, base_engine: AsrEngine, bilingual: Bilingual
) -> None:
    server = await make_server(asr_engine=base_engine)
    wav = io.BytesIO()
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bilingual_pcm())
    async with _client(server) as client:
        response: Any = await client.listen.v1.media.transcribe_file(
            request=wav.getvalue(), model="nova-3", language="multi", utterances=True
        )
        (channel,) = response.results.channels
        # two English and two Japanese utterances: the tie goes to the first language heard
        assert channel.detected_language == "en"
        said = [u.languages for u in response.results.utterances if u.transcript]
        assert said == [[u.language] for u in bilingual.utterances], said

        # with hints, detection chooses among them only
        hinted: Any = await client.listen.v1.media.transcribe_file(
            request=wav.getvalue(), model="nova-3", language="multi", language_hint=["en", "de"]
        )
        assert hinted.results.channels[0].detected_language in ("en", "de")


async def test_a_hint_the_model_lacks_is_a_400(make_server: Any) -> None:
    server = await make_server()  # the English-only tiny.en
    async with _client(server) as client:
        with pytest.raises(ApiError) as refused:
            async with client.listen.v1.connect(
                model="nova-3", encoding="linear16", sample_rate=16000, language="multi", language_hint="ja"
            ):
                pass
    assert refused.value.status_code == 400
