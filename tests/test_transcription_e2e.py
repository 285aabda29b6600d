"""End to end over a real socket with the real tiny.en model: speech in, correct finals out."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from support import (
    API_KEY,
    base_url,
    load_transcripts,
    read_pcm16,
    resample_pcm,
    silence,
    to_bytes,
    wer,
)

from streamer.client import StreamerClient
from streamer_bench.corpus_text import content_words
from streamer_bench.wer import words

pytestmark = pytest.mark.slow

UTTERANCES = ["en_utt1.wav", "en_utt2.wav", "en_utt3.wav"]
GAP_S = 1.2
# Bounds that hold on any machine. tiny.en runs in int8, and int8 matrix products round differently on
# different CPUs (AVX-512 VNNI/AMX, AVX2, SSE kernels); greedy decoding turns a small score difference into
# a different word wherever the model is unsure. Measured on 8 runs here (Xeon with AVX-512 VNNI and AMX;
# default kernels, CTranslate2 forced to AVX2 / AVX / generic code, MKL limited to AVX2 / SSE4.2 /
# AVX-512 without VNNI), and the report of a fresh 2-core machine:
# - 16 and 48 kHz: every utterance exact (WER 0) in all 8 runs. MAX_WER leaves one slip per utterance,
#   MAX_STREAM_WER about five words of the 34 in the stream.
# - 8 kHz carries nothing above 4 kHz; sibilants blur and the model guesses, differently per kernel:
#   "school" -> "cool", "football in" -> "for falling", "this weekend" -> "that we can" or "friends in my
#   visit if we can". Stream WER 0.147 (4 runs) or 0.176 (4 runs) here, 0.206 on the fresh machine (3 of
#   3 runs): the old bound of 0.15 was one machine's numerics. Exact words are no bound there; content
#   words are. Per utterance at least 3 of the 5 or 6 content words were heard in every run (recall 0.6);
#   the bound lets one more go (0.4). The stream bound, 0.35 (12 of 34 words), sits five words above the
#   worst run seen.
MAX_WER = 0.2
MAX_STREAM_WER = 0.15
MIN_CONTENT_RECALL_NARROWBAND = 0.4
MAX_STREAM_WER_NARROWBAND = 0.35
SPEED = 4.0  # real-time-sized chunks (100 ms), sent 4x faster than real time to keep the suite short


def build_stream(rate: int = 16000) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """The three utterances with pauses; returns the samples and (start_ms, end_ms, text) per utterance."""
    transcripts = load_transcripts()
    parts: list[np.ndarray] = [silence(0.5, rate)]
    spans: list[tuple[int, int, str]] = []
    pos = int(0.5 * rate)
    for name in UTTERANCES:
        speech = resample_pcm(read_pcm16(name), rate)
        spans.append((pos * 1000 // rate, (pos + speech.size) * 1000 // rate, transcripts[name]["text"]))
        parts += [speech, silence(GAP_S, rate)]
        pos += speech.size + int(GAP_S * rate)
    return np.concatenate(parts), spans


async def run_stream(
    server: TestServer, samples: np.ndarray, rate: int, speed: float = SPEED, **config: Any
) -> list[dict[str, Any]]:
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"sample_rate": rate, "language": "en", **config})
        assert stream.created is not None and stream.created["config"]["sample_rate"] == rate
        async with stream:
            sender = asyncio.create_task(_send_fast(stream, to_bytes(samples), rate, speed))
            events = [e async for e in stream]
            await sender
    assert events[-1]["type"] == "session.closed"
    return events


async def _send_fast(stream: Any, pcm: bytes, rate: int, speed: float) -> None:
    step = rate // 10 * 2
    for i in range(0, len(pcm), step):
        await stream.ws.send_bytes(pcm[i : i + step])
        await asyncio.sleep(0.1 / speed)
    await stream.close_session()


def content_recall(reference: str, hypothesis: str) -> float:
    """The share of the reference's content words (not "the", "are", "in", ...) found in the hypothesis."""
    wanted = content_words(reference)
    heard = set(words(hypothesis))
    return sum(w in heard for w in wanted) / max(1, len(wanted))


def finals_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "transcript.final"]


@pytest.mark.parametrize("rate", [16000, 8000, 48000])
async def test_utterances_yield_one_final_each(server: TestServer, rate: int) -> None:
    samples, spans = build_stream(rate)
    events = await asyncio.wait_for(run_stream(server, samples, rate), 90)
    finals = finals_of(events)
    assert [f["seq"] for f in finals] == list(range(1, len(spans) + 1)), [f["text"] for f in finals]
    narrowband = rate < 16000
    whole = wer(" ".join(t for _, _, t in spans), " ".join(f["text"] for f in finals))
    assert whole <= (MAX_STREAM_WER_NARROWBAND if narrowband else MAX_STREAM_WER), [f["text"] for f in finals]
    for final, (start_ms, end_ms, text) in zip(finals, spans, strict=True):
        # the reported audio span brackets the spoken words (VAD pre-roll before, a short tail after)
        assert final["audio_start_ms"] <= start_ms + 150
        assert final["audio_end_ms"] >= end_ms - 150
        assert final["audio_end_ms"] <= end_ms + int(GAP_S * 1000)
        if narrowband:
            assert content_recall(text, final["text"]) >= MIN_CONTENT_RECALL_NARROWBAND, (text, final["text"])
        else:
            assert wer(text, final["text"]) <= MAX_WER, (text, final["text"])
        assert final["language"] == "en"
    types = [e["type"] for e in events]
    assert types.count("speech.started") >= len(spans)
    closed = events[-1]
    assert closed["finals"] == len(spans)
    assert closed["audio_ms"] >= samples.size * 1000 // rate - 100


@pytest.mark.parametrize("kind", ["silence", "noise"])
async def test_no_finals_from_silence_or_noise(server: TestServer, kind: str) -> None:
    rng = np.random.default_rng(7)
    seconds = 30
    if kind == "silence":
        samples = silence(seconds)
    else:
        samples = (rng.normal(0, 0.01, 16000 * seconds) * 32768).astype("<i2")  # about -40 dBFS
    events = await asyncio.wait_for(run_stream(server, samples, 16000, speed=10.0), 60)
    assert finals_of(events) == []
    assert events[-1]["finals"] == 0


async def test_commit_finalizes_buffered_speech(server: TestServer) -> None:
    speech = read_pcm16("en_utt1.wav")
    text = load_transcripts()["en_utt1.wav"]["text"]
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        async with stream:
            # speech with no trailing silence: only the commit can end the utterance
            await stream.send_pcm(to_bytes(speech), realtime=False, close=False)
            await stream.commit()
            final = None
            while final is None:
                event = await stream.receive(timeout=30)
                assert event is not None
                if event["type"] == "transcript.final":
                    final = event
            assert wer(text, final["text"]) <= MAX_WER
            await stream.close_session()
            rest = [e async for e in stream]
            assert await stream.receive(timeout=5) is None
    assert rest[-1]["type"] == "session.closed" and rest[-1]["finals"] == 1
    assert stream.close_code == 1000
