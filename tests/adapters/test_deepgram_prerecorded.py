"""Deepgram pre-recorded ``POST /v1/listen`` with the official deepgram-sdk (``listen.v1.media.
transcribe_file``): files in every container, raw audio with ``encoding``, stereo, utterances, and
refusals in Deepgram's REST error shape."""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from encoders import encode, m4a, mulaw, wav_header
from support import API_KEY, read_pcm16, resample_pcm

from streamer_bench.wer import words as normalized_words

from .conftest import Sentence, http_base, ws_base

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client
    import deepgram.listen.v1.media.client  # noqa: F401
    from deepgram import AsyncDeepgramClient
    from deepgram.core.api_error import ApiError
    from deepgram.environment import DeepgramClientEnvironment

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]

ServerFactory = Callable[..., Awaitable[TestServer]]


@contextlib.asynccontextmanager
async def _client(server: TestServer, api_key: str = API_KEY) -> AsyncIterator[AsyncDeepgramClient]:
    base, ws = http_base(server), ws_base(server)
    environment = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    async with httpx.AsyncClient(timeout=60) as http:
        yield AsyncDeepgramClient(environment=environment, httpx_client=http, api_key=api_key)


@pytest.mark.parametrize("container", ["wav", "ogg", "webm", "flac", "mp3", "aac"])
async def test_a_file_in_any_container_is_transcribed(
    make_server: ServerFactory, sentence: Sentence, container: str
) -> None:
    server = await make_server()
    data = encode(sentence.samples, 16000, container)
    async with _client(server) as client:
        response: Any = await client.listen.v1.media.transcribe_file(
            request=data, model="nova-3", punctuate=True, utterances=True
        )
    assert response.metadata.channels == 1
    assert response.metadata.sha256 == hashlib.sha256(data).hexdigest()
    assert response.metadata.duration == pytest.approx(sentence.samples.size / 16000, abs=0.1)
    (channel,) = response.results.channels
    best = channel.alternatives[0]
    assert set(sentence.content_words) <= set(normalized_words(best.transcript)), container
    assert best.transcript[0].isupper() and 0 < best.confidence <= 1
    assert {w.word for w in best.words} >= set(sentence.content_words)
    for word in best.words:
        assert sentence.start_s - 0.4 <= word.start <= word.end <= sentence.end_s + 0.4
    (utterance,) = response.results.utterances
    assert utterance.transcript == best.transcript and utterance.channel == 0


async def test_stereo_multichannel_and_raw_mulaw(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await make_server()
    other = read_pcm16("en_utt1.wav")
    n = max(sentence.samples.size, other.size)
    stereo = np.zeros((n, 2), dtype=np.int16)
    stereo[: sentence.samples.size, 0] = sentence.samples
    stereo[: other.size, 1] = other
    async with _client(server) as client:
        response: Any = await client.listen.v1.media.transcribe_file(
            request=encode(stereo, 16000, "ogg"), multichannel=True, utterances=True
        )
        assert response.metadata.channels == 2 and len(response.results.channels) == 2
        left, right = (normalized_words(c.alternatives[0].transcript) for c in response.results.channels)
        assert set(sentence.content_words) <= set(left)
        assert {"children", "football", "park"} <= set(right)
        assert {u.channel for u in response.results.utterances} == {0, 1}
        # without multichannel: mixed down, one channel
        mixed: Any = await client.listen.v1.media.transcribe_file(request=encode(stereo, 16000, "ogg"))
        assert len(mixed.results.channels) == 1 and mixed.results.utterances is None
    # raw audio needs encoding and sample_rate (the SDK has no sample_rate for files: plain HTTP)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{http_base(server)}/v1/listen?encoding=mulaw&sample_rate=8000",
            data=mulaw(resample_pcm(sentence.samples, 8000)),
            headers={"Authorization": f"Token {API_KEY}", "Content-Type": "audio/basic"},
        ) as r:
            assert r.status == 200
            body = await r.json()
    transcript = body["results"]["channels"][0]["alternatives"][0]["transcript"]
    assert set(sentence.content_words) <= set(normalized_words(transcript))


async def test_m4a_is_read_when_its_index_comes_first(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await make_server()
    async with _client(server) as client:
        response: Any = await client.listen.v1.media.transcribe_file(
            request=m4a(sentence.samples, 16000, faststart=True)
        )
    transcript = response.results.channels[0].alternatives[0].transcript
    assert set(sentence.content_words) <= set(normalized_words(transcript))
    # the index after ten times more media than a reader can hold: refused, saying why
    status, body = await _refusal(server, m4a(np.tile(sentence.samples, 10), 16000, faststart=False))
    assert status == 400 and "moov" in body["err_msg"] and "faststart" in body["err_msg"]


async def _refusal(server: TestServer, data: bytes, query: str = "", **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{http_base(server)}/v1/listen{query}",
            data=data,
            headers={"Authorization": f"Token {API_KEY}", **headers},
        ) as r:
            return r.status, await r.json()


async def test_refusals_in_deepgrams_shape(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await make_server()
    async with _client(server, api_key="not-a-key") as client:
        with pytest.raises(ApiError) as refused:
            await client.listen.v1.media.transcribe_file(request=encode(sentence.samples, 16000, "wav"))
    assert refused.value.status_code == 401
    # a URL to fetch: this server fetches nothing
    status, body = await _refusal(
        server, b'{"url": "http://169.254.169.254/latest/meta-data/"}', **{"Content-Type": "application/json"}
    )
    assert status == 400 and "fetches nothing" in body["err_msg"] and body["request_id"]
    assert body["err_code"] == "BAD_REQUEST"
    for data, query, says in [
        (b"\x00" * 5000, "", "could not be decoded"),  # garbage
        (encode(sentence.samples, 16000, "webm")[:300], "", "could not be decoded"),  # truncated
        (encode(sentence.samples, 16000, "flac"), "?encoding=opus", "not the declared encoding"),
        (encode(sentence.samples, 16000, "webm"), "?encoding=ogg-opus", "not the declared encoding"),
        (bytes(6), "?encoding=linear32&sample_rate=16000", "inside a 32-bit sample"),
        (wav_header(1) + bytes(20000), "", "outside"),  # 1 Hz: hours from a few KiB
        # five minutes of silence in ~70 KB: more audio than honest bytes hold
        (encode(np.zeros(300 * 16000, dtype=np.int16), 16000, "flac"), "", "decompression bomb"),
        (encode(np.zeros(300 * 16000, dtype=np.int16), 16000, "ogg"), "", "decompression bomb"),
        (b"", "", "no audio"),
        (bytes(100), "?encoding=speex", "not supported"),
    ]:
        status, body = await _refusal(server, data, query, **{"Content-Type": "application/octet-stream"})
        assert status == 400 and says in body["err_msg"], (query, body)
        assert set(body) == {"err_code", "err_msg", "request_id"}
