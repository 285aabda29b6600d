"""OpenAI realtime transcription sessions with ``languages`` (and no ``language``), with the official openai
SDK against a real server with the ``base`` model, on the bilingual clip."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from support import API_KEY, read_pcm16, resample_pcm, to_bytes

from streamer.pipeline.asr import AsrEngine
from streamer_bench.bilingual import Bilingual

pytestmark = pytest.mark.slow

RATE = 24000
CHUNK = RATE // 10
COMPLETED = "conversation.item.input_audio_transcription.completed"


async def _completed(make_server: Any, engine: AsrEngine, transcription: dict[str, Any], n: int) -> list[Any]:
    server = await make_server(asr_engine=engine)
    http, ws = f"http://{server.host}:{server.port}/v1", f"ws://{server.host}:{server.port}/v1"
    client = AsyncOpenAI(api_key=API_KEY, base_url=http, websocket_base_url=ws)
    audio = resample_pcm(read_pcm16("bilingual/bilingual.wav"), RATE)
    done: list[Any] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": RATE},
                        "transcription": {"model": "gpt-4o-transcribe", **transcription},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    }
                },
            }
        )
        for i in range(0, audio.size, CHUNK):
            chunk = base64.b64encode(to_bytes(audio[i : i + CHUNK])).decode()
            await connection.input_audio_buffer.append(audio=chunk)
        async with asyncio.timeout(90):
            async for event in connection:
                assert event.type != "error", event
                if event.type == COMPLETED:
                    done.append(event)
                    if len(done) == n:
                        break
    await client.close()
    return done


async def test_each_item_reports_its_detected_language(
    make_server: Any, base_engine: AsrEngine, bilingual: Bilingual
) -> None:
    done = await _completed(make_server, base_engine, {"languages": ["en", "ja"]}, len(bilingual.utterances))
    said = [[lang.code for lang in e.languages or []] for e in done]
    assert said == [[u.language] for u in bilingual.utterances], [(e.transcript, e.languages) for e in done]


async def test_a_given_language_is_not_reported_as_detected(
    make_server: Any, base_engine: AsrEngine, bilingual: Bilingual
) -> None:
    done = await _completed(make_server, base_engine, {"language": "en"}, 1)
    assert done[0].languages is None


async def test_an_upload_without_a_language_reports_the_detected_ones(
    make_server: Any, base_engine: AsrEngine, bilingual: Bilingual
) -> None:
    server = await make_server(asr_engine=base_engine)
    client = AsyncOpenAI(api_key=API_KEY, base_url=f"http://{server.host}:{server.port}/v1")
    wav = (bilingual.root / "bilingual.wav").read_bytes()
    verbose = await client.audio.transcriptions.create(
        model="whisper-1", file=("talk.wav", wav, "audio/wav"), response_format="verbose_json"
    )
    plain = await client.audio.transcriptions.create(model="whisper-1", file=("talk.wav", wav, "audio/wav"))
    # Japanese not allowed: never reported (its utterances come out in an allowed language, or not at all)
    hinted = await client.audio.transcriptions.create(
        model="whisper-1", file=("talk.wav", wav, "audio/wav"), languages=["en", "de"]
    )
    with pytest.raises(openai.BadRequestError) as refused:  # a code the model lacks
        await client.audio.transcriptions.create(
            model="whisper-1", file=("talk.wav", wav, "audio/wav"), languages=["en", "zz"]
        )
    await client.close()
    assert refused.value.status_code == 400 and "zz" in str(refused.value.body)
    assert {lang.code for lang in hinted.languages or []} <= {"en", "de"}, hinted
    # two utterances in each: verbose_json's one language is the first heard; json lists both
    assert verbose.language == "english"  # as OpenAI names it
    assert [lang.code for lang in plain.languages or []] == ["en", "ja"]
