"""What ``POST /v1/audio/transcriptions`` asks of the model, with the official ``openai`` SDK on tiny.en:
``prompt``, ``temperature``, ``keywords``, ``include[]=logprobs``, ``chunking_strategy``, verbose_json's
decode numbers and language name, and the streamed ``done`` event's usage."""

from __future__ import annotations

import asyncio
import base64
import warnings
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import openai
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from support import API_KEY, read_pcm16, resample_pcm, silence, to_bytes

from .conftest import http_base, ws_base
from .test_transcriptions import _client, _wav

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]
LOWERCASE = "hello there how are you doing i am fine thanks"
SAID = "Please open the window and let some fresh air into the room."


async def _translate(client: AsyncOpenAI, **params: Any) -> Any:
    """``client.audio.translations.create`` (which the SDK marks deprecated, as OpenAI's docs do not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return await client.audio.translations.create(**params)


def _speech() -> bytes:
    return _wav(np.concatenate([silence(0.3), read_pcm16("en_utt2.wav"), silence(0.6)]))


async def test_prompt_and_keywords_reach_the_model(make_server: ServerFactory) -> None:
    server = await make_server()
    async with _client(server) as client:
        plain = await client.audio.transcriptions.create(model="whisper-1", file=("a.wav", _speech()))
        prompted = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _speech()), prompt=LOWERCASE
        )
        keywords = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _speech()), keywords=LOWERCASE.split()
        )
    assert plain.text == SAID
    # Whisper continues its previous text's style: no capitals, no punctuation
    assert prompted.text == SAID.lower().rstrip(".")
    assert keywords.text != plain.text  # the words are in the model's prompt too


async def test_temperature_and_verbose_json_decode_numbers(make_server: ServerFactory) -> None:
    server = await make_server()
    async with _client(server) as client:
        greedy = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _speech()), response_format="verbose_json"
        )
        warm = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _speech()), response_format="verbose_json", temperature=0.6
        )
        with pytest.raises(openai.BadRequestError) as hot:
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", _speech()), temperature=1.5
            )
    assert hot.value.body is not None and "temperature" in str(hot.value.body)
    assert greedy.language == "english"  # as OpenAI writes it, not "en"
    (segment,) = greedy.segments or []
    assert segment.text == SAID and segment.temperature == 0.0
    assert -1.0 < segment.avg_logprob < 0.0
    assert 0.0 <= segment.no_speech_prob < 0.5
    data = SAID.encode()
    assert segment.compression_ratio == pytest.approx(len(data) / len(zlib.compress(data)))
    assert len(segment.tokens) >= len(SAID.split())
    assert segment.seek == round(segment.start * 100)
    assert [s.temperature for s in warm.segments or []] == [0.6]


async def test_include_logprobs(make_server: ServerFactory) -> None:
    server = await make_server()
    async with _client(server) as client:
        result = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _speech()), include=["logprobs"]
        )
        with pytest.raises(openai.BadRequestError) as not_json:
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", _speech()), include=["logprobs"], response_format="text"
            )
    assert "include" in not_json.value.message
    logprobs = result.logprobs or []
    assert "".join(p.token or "" for p in logprobs).strip() == result.text == SAID
    assert all(p.logprob is not None and p.logprob <= 0 for p in logprobs)
    assert all(bytes(int(b) for b in p.bytes or []) == (p.token or "").encode() for p in logprobs)


async def test_chunking_strategy_auto_is_what_the_server_does_server_vad_is_refused(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with _client(server) as client:
        auto = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _speech()), chunking_strategy="auto"
        )
        with pytest.raises(openai.BadRequestError) as refused:
            await client.audio.transcriptions.create(
                model="whisper-1",
                file=("a.wav", _speech()),
                chunking_strategy={"type": "server_vad", "silence_duration_ms": 300},
            )
    assert auto.text == SAID
    assert refused.value.status_code == 400
    assert refused.value.body is not None and "chunking_strategy" in str(refused.value.body)
    assert refused.value.code == "invalid_value" and '"auto"' in refused.value.message


async def test_streaming_ends_with_token_usage_and_logprobs(make_server: ServerFactory) -> None:
    server = await make_server()
    async with _client(server) as client:
        events = [
            event
            async for event in await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", _speech()), stream=True, include=["logprobs"]
            )
        ]
    assert [e.type for e in events] == ["transcript.text.delta", "transcript.text.done"]
    delta, done = events
    assert delta.type == "transcript.text.delta" and done.type == "transcript.text.done"
    assert done.text == delta.delta == SAID
    assert done.logprobs is not None and delta.logprobs is not None
    assert [p.model_dump() for p in delta.logprobs] == [p.model_dump() for p in done.logprobs]
    assert done.usage is not None and done.usage.type == "tokens"
    assert done.usage.output_tokens == len(done.logprobs)
    assert done.usage.input_tokens == round(50 * (0.9 + read_pcm16("en_utt2.wav").size / 16000))
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens


async def test_an_english_only_model_cannot_translate(make_server: ServerFactory) -> None:
    server = await make_server()
    async with _client(server) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await _translate(client, model="whisper-1", file=("a.wav", _speech()))
        with pytest.raises(openai.BadRequestError) as unknown:  # not a field of translations
            await _translate(
                client, model="whisper-1", file=("a.wav", _speech()), extra_body={"language": "de"}
            )
    assert refused.value.status_code == 400
    assert refused.value.body is not None and refused.value.body.get("param") == "model"  # type: ignore[union-attr]
    assert unknown.value.code == "unknown_parameter"


async def test_realtime_prompt_keywords_and_logprobs(make_server: ServerFactory) -> None:
    """GA ``audio.input.transcription.prompt`` / ``keywords`` and ``include`` logprobs, beta's ``prompt``."""
    server = await make_server()
    audio = resample_pcm(np.concatenate([silence(0.3), read_pcm16("en_utt2.wav"), silence(1.0)]), 24000)
    transcription = {"model": "gpt-4o-transcribe", "language": "en", "prompt": LOWERCASE}
    ga = {
        "type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": transcription}},
        "include": ["item.input_audio_transcription.logprobs"],
    }
    beta = {"input_audio_format": "pcm16", "input_audio_transcription": transcription}
    keywords = {**ga, "audio": {"input": {"transcription": {"keywords": LOWERCASE.split()}}}, "include": []}
    completed = [await _realtime(server, ga, audio), await _realtime(server, beta, audio, beta=True)]
    with_keywords = await _realtime(server, keywords, audio)
    assert [c.transcript for c in completed] == [SAID.lower().rstrip(".")] * 2
    logprobs = completed[0].logprobs or []
    assert "".join(p.token for p in logprobs).strip() == completed[0].transcript
    assert all(p.logprob <= 0 and bytes(p.bytes) == p.token.encode() for p in logprobs)
    assert completed[1].logprobs is None  # not asked for
    assert with_keywords.transcript != SAID and with_keywords.logprobs is None


async def _realtime(
    server: TestServer, session: dict[str, Any], audio: np.ndarray, beta: bool = False
) -> Any:
    """The first completed event of a transcription session set to ``session`` that hears ``audio``."""
    client = AsyncOpenAI(
        api_key=API_KEY, base_url=f"{http_base(server)}/v1", websocket_base_url=f"{ws_base(server)}/v1"
    )
    async with client, client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        if beta:
            await connection.send({"type": "transcription_session.update", "session": session})  # type: ignore[arg-type]
        else:
            await connection.session.update(session=session)  # type: ignore[arg-type]
        for i in range(0, audio.size, 2400):
            chunk = base64.b64encode(to_bytes(audio[i : i + 2400])).decode()
            await connection.input_audio_buffer.append(audio=chunk)
        async with asyncio.timeout(30):
            async for event in connection:
                assert event.type != "error", event
                if event.type == "conversation.item.input_audio_transcription.completed":
                    return event
    raise AssertionError("no completed event")
