"""Compressed-audio bombs and garbage on Deepgram's live socket, beside an honest session: every bad
stream is closed with Deepgram's DATA-0000 reason, within a bound; the honest session keeps its results
and the event loop stays responsive."""

from __future__ import annotations

import asyncio
import json
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from encoders import encode, wav_header
from support import API_KEY, FIXTURES, to_bytes

from streamer_bench.wer import words as normalized_words

from .conftest import hostile_settings

ServerFactory = Callable[..., Awaitable[TestServer]]
SILENCE_S = 120  # a few KiB of Opus or FLAC that decode to two minutes


@dataclass(frozen=True)
class Sentence:
    samples: np.ndarray
    content_words: list[str]


@pytest.fixture(scope="module")
def sentence() -> Sentence:
    """The corpus's first sentence and the silence after it (as tests/adapters use it)."""
    corpus = FIXTURES / "corpus"
    first = json.loads((corpus / "manifest.json").read_text())["items"][0]["sentences"][0]
    with wave.open(str(corpus / "clean.wav"), "rb") as w:
        samples = np.frombuffer(w.readframes(int(3.5 * w.getframerate())), dtype="<i2")
    return Sentence(samples, first["content_words"])


def ws_base(server: TestServer) -> str:
    return f"ws://{server.host}:{server.port}"


async def _listen(
    http: aiohttp.ClientSession, server: TestServer, query: str
) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(f"{ws_base(server)}/v1/listen?{query}", protocols=("token", API_KEY))


async def _send_until_closed(ws: aiohttp.ClientWebSocketResponse, data: bytes, chunk: int) -> tuple[int, str]:
    """Send ``data`` (then CloseStream) and read until the server closes: the close code and reason."""

    async def send() -> None:
        try:
            for i in range(0, len(data), chunk):
                await ws.send_bytes(data[i : i + chunk])
            await ws.send_str(json.dumps({"type": "CloseStream"}))
        except ConnectionError:
            pass  # the server closed first: that is the point

    sending = asyncio.create_task(send())
    async with asyncio.timeout(20):
        while (msg := await ws.receive()).type not in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        ):
            pass
    sending.cancel()
    await asyncio.wait({sending})
    return ws.close_code or 0, str(msg.extra or "")


async def _honest(http: aiohttp.ClientSession, server: TestServer, sentence: Sentence) -> str:
    ws = await _listen(http, server, "encoding=linear16&sample_rate=16000")
    finals: list[str] = []
    step = 1600
    for i in range(0, sentence.samples.size, step):
        await ws.send_bytes(to_bytes(sentence.samples[i : i + step]))
    await ws.send_str(json.dumps({"type": "CloseStream"}))
    async with asyncio.timeout(30):
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["type"] == "Results" and frame["is_final"]:
                finals.append(frame["channel"]["alternatives"][0]["transcript"])
    assert ws.close_code == 1000
    return " ".join(finals)


async def _lag(stop: asyncio.Event, period_s: float = 0.02) -> float:
    """The worst lateness of a timer on the loop until ``stop``."""
    worst = 0.0
    while not stop.is_set():
        asked = time.monotonic()
        await asyncio.sleep(period_s)
        worst = max(worst, time.monotonic() - asked - period_s)
    return worst


@pytest.mark.timeout(60)
async def test_bombs_and_garbage_are_closed_and_the_honest_session_is_served(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server(hostile_settings())
    silence = np.zeros(SILENCE_S * 16000, dtype=np.int16)
    opus_silence, flac_silence = encode(silence, 16000, "ogg"), encode(silence, 16000, "flac")
    assert len(opus_silence) + len(flac_silence) < 400_000  # small files, long audio
    webm = encode(sentence.samples, 16000, "webm")
    bad: list[tuple[str, bytes, int, str]] = [
        # (query, bytes, message size, what the close reason says: Deepgram's DATA-0000 only for audio
        # that cannot be decoded, TOO_MANY_REQUESTS for audio faster than the pacer allows)
        ("", opus_silence, 4096, "audio_rate_exceeded"),
        ("encoding=opus", opus_silence, 4096, "audio_rate_exceeded"),
        ("", flac_silence, 4096, "audio_rate_exceeded"),
        ("", wav_header(16000) + bytes(16000 * 2 * 30), 65536, "audio_rate_exceeded"),  # claims hours
        ("", wav_header(1) + bytes(8000), 4096, "invalid_audio"),  # 1 Hz
        ("", bytes(range(256)) * 64, 4096, "invalid_audio"),  # garbage
        ("encoding=flac", webm, 4096, "invalid_audio"),  # not the declared codec
        ("", webm[:200], 100, "invalid_audio"),  # truncated inside the header
    ]
    stop = asyncio.Event()
    lag = asyncio.create_task(_lag(stop))
    async with aiohttp.ClientSession() as http:
        sockets = [await _listen(http, server, query) for query, *_ in bad]
        honest = asyncio.create_task(_honest(http, server, sentence))
        closes = await asyncio.gather(
            *(
                _send_until_closed(ws, data, chunk)
                for ws, (_, data, chunk, _) in zip(sockets, bad, strict=True)
            )
        )
        transcript = await honest
    stop.set()
    worst_lag = await lag
    for (query, _, _, says), (code, reason) in zip(bad, closes, strict=True):
        prefix = "TOO_MANY_REQUESTS" if says == "audio_rate_exceeded" else "DATA-0000"
        assert code == 1008 and reason.startswith(prefix) and says in reason, (query, says, reason)
    assert set(sentence.content_words) <= set(normalized_words(transcript))
    # decoding runs off the loop; one shared 2-core CI machine also runs the model: a generous bound
    assert worst_lag < 0.25, worst_lag
