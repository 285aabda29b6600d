"""``POST /v1/audio/transcriptions`` with the official ``openai`` SDK: files decoded by PyAV, the real tiny.en
model through the session machinery, every response format, streaming, and bad input in OpenAI's shape."""

from __future__ import annotations

import io
import wave
from collections.abc import Awaitable, Callable

import aiohttp
import av
import numpy as np
import openai
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from support import API_KEY, silence, to_bytes

from streamer_bench.wer import words as normalized_words

from .conftest import Sentence, http_base

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]


def _client(server: TestServer, api_key: str = API_KEY) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=api_key, base_url=f"{http_base(server)}/v1")


def _wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_bytes(samples))
    return out.getvalue()


def _encoded(samples: np.ndarray, container: str, codec: str) -> bytes:
    """``samples`` (16 kHz) compressed by FFmpeg, as a client's recording would be."""
    out = io.BytesIO()
    with av.open(out, "w", format=container) as file:
        stream = file.add_stream(codec, rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (samples.astype(np.float32) / 32768.0).reshape(1, -1), format="fltp", layout="mono"
        )
        frame.rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            file.mux(packet)
    return out.getvalue()


async def test_verbose_json_has_segments_and_words_inside_the_audio(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    async with _client(server) as client:
        result = await client.audio.transcriptions.create(
            model="whisper-1",
            file=("speech.wav", _wav(sentence.samples), "audio/wav"),
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
        )
    assert set(sentence.content_words) <= set(normalized_words(result.text))
    assert result.duration == pytest.approx(sentence.samples.size / 16000, abs=0.01)
    assert result.language == "english"  # as OpenAI names it
    (segment,) = result.segments or []
    assert segment.text == result.text
    assert sentence.start_s - 0.5 <= segment.start < segment.end <= sentence.end_s + 1.0
    words = result.words or []
    assert [w.word for w in words] == result.text.split()
    for w in words:
        assert sentence.start_s - 0.4 <= w.start <= w.end <= sentence.end_s + 0.4, w


async def test_compressed_files_plain_formats_and_streaming(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server()
    # two sentences' worth: the file is cut at the silence between them
    two = np.concatenate([sentence.samples, silence(0.5), sentence.samples])
    mp3 = _encoded(two, "mp3", "libmp3lame")
    async with _client(server) as client:
        text = await client.audio.transcriptions.create(
            model="whisper-1", file=("speech.mp3", mp3), response_format="text"
        )
        assert len(normalized_words(text)) >= 2 * len(sentence.content_words)
        srt = await client.audio.transcriptions.create(
            model="whisper-1",
            file=("speech.ogg", _encoded(sentence.samples, "ogg", "libopus")),
            response_format="srt",
        )
        assert srt.startswith("1\n00:00:00,") and " --> 00:00:0" in srt
        events = [
            event
            async for event in await client.audio.transcriptions.create(
                model="whisper-1", file=("speech.flac", _encoded(two, "flac", "flac")), stream=True
            )
        ]
    *deltas, done = events
    # (as the text becomes stable: tests/adapters/test_transcription_stream.py)
    assert len(deltas) >= 2 and all(e.type == "transcript.text.delta" for e in deltas)
    assert done.type == "transcript.text.done"
    assert "".join(e.delta for e in deltas if e.type == "transcript.text.delta") == done.text
    assert len(normalized_words(done.text)) >= 2 * len(sentence.content_words)


async def test_bad_input_gets_openai_errors(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await make_server()
    async with _client(server, api_key="not-a-key") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", _wav(sentence.samples))
            )
    async with _client(server) as client:
        with pytest.raises(openai.BadRequestError) as garbage:
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.mp3", b"\x00\x01not audio" * 64)
            )
        assert garbage.value.code == "invalid_audio"
        with pytest.raises(openai.BadRequestError) as unknown:
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", _wav(sentence.samples)), extra_body={"speed": "2"}
            )
        assert unknown.value.code == "unknown_parameter"
        with pytest.raises(openai.BadRequestError) as words_without_verbose:
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", _wav(sentence.samples)), timestamp_granularities=["word"]
            )
        assert "verbose_json" in words_without_verbose.value.message
    async with aiohttp.ClientSession() as http:
        with aiohttp.MultipartWriter("form-data") as data:
            data.append("whisper-1").set_content_disposition("form-data", name="model")
        async with http.post(
            f"{http_base(server)}/v1/audio/transcriptions",
            data=data,
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "file"
