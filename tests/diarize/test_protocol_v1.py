"""Speaker labels on protocol v1 (``diarize: true``): the committed two-voice dialogue streamed through a
real server (tiny.en, Silero, the GE2E encoder on its worker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from faults.streams import events_until_closed, of_type, send_audio
from support import API_KEY, base_url, skip_or_fail, to_bytes

from streamer.client import StreamerClient
from streamer.pipeline.speakers_weights import default_wheel_path

from .dialogue import best_mapping_share, two_voices

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]
UNTIL_MS = 13_300  # four turns: joe, alpha 305 ms later (inside one VAD utterance), joe, alpha


@pytest.fixture(autouse=True)
def _weights() -> None:
    if not default_wheel_path().is_file():
        skip_or_fail("the speaker encoder's weights are not in the cache (run scripts/setup.sh)")


async def test_two_voices_get_their_own_speakers_and_a_quick_reply_its_own_final(
    make_server: ServerFactory,
) -> None:
    dialogue = two_voices(UNTIL_MS)
    server = await make_server()
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", "interim_results": False, "diarize": True})
        await send_audio(stream, to_bytes(dialogue.samples))
        await stream.close_session()
        events = await events_until_closed(stream, timeout=60)
    finals = of_type(events, "transcript.final")
    assert finals and all(isinstance(f.get("speaker"), int) for f in finals)
    assert [f["seq"] for f in finals] == list(range(1, len(finals) + 1))
    pairs = []
    for f in finals:
        assert [w["word"] for w in f["words"]] == f["text"].split()
        assert {w["speaker"] for w in f["words"]} == {f["speaker"]}
        assert 0 <= f["speaker_confidence"] <= 1
        pairs += [(dialogue.speaker_at((w["start_ms"] + w["end_ms"]) / 2), w["speaker"]) for w in f["words"]]
    # labels in order of first appearance, and the two voices told apart
    first_seen = list(dict.fromkeys(f["speaker"] for f in finals))
    assert first_seen == list(range(len(first_seen)))
    assert len(first_seen) >= 2
    assert best_mapping_share(pairs) >= 0.8, pairs
    # a reply 305 ms after a question is inside one VAD utterance: it comes back as its own final
    by_segment: dict[int, list[int]] = {}
    for f in finals:
        by_segment.setdefault(f["segment_id"], []).append(f["speaker"])
    assert any(len(set(speakers)) >= 2 for speakers in by_segment.values()), by_segment
    # the embeddings ran as batches of the shared worker, counted like the other batchers'
    async with aiohttp.ClientSession() as http, http.get(f"{base_url(server)}/metrics") as r:
        metrics = await r.text()
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith('streamer_batch_size_count{batcher="speakers"}')
    ]
    # (at least one call per utterance: its change-point test and its embedding share one call)
    assert counted and float(counted[0].split()[-1]) >= len(by_segment), counted


async def test_without_diarize_finals_and_words_carry_no_speaker(make_server: ServerFactory) -> None:
    dialogue = two_voices(3_600)  # the first question alone
    server = await make_server()
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", "interim_results": False, "word_timestamps": True})
        await send_audio(stream, to_bytes(dialogue.samples))
        await stream.close_session()
        events = await events_until_closed(stream, timeout=30)
    (final,) = of_type(events, "transcript.final")
    assert final["words"] and "speaker" not in final and "speaker_confidence" not in final
    assert all("speaker" not in w for w in final["words"])


async def test_a_resumed_session_keeps_its_speakers_numbers(make_server: ServerFactory) -> None:
    # joe, alpha, joe, alpha, joe, alpha ("Sure."), joe | alpha, joe: after the drop alpha speaks first,
    # so speakers numbered afresh would give her joe's 0
    dialogue = two_voices(26_400)
    cut = 20_100 * 16  # samples: between the seventh turn's end (19.85 s) and the eighth's start
    server = await make_server()
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        first = await client.connect({"language": "en", "interim_results": False, "diarize": True})
        await send_audio(first, to_bytes(dialogue.samples[:cut]))
        await first.commit()
        async with asyncio.timeout(60):  # until the last part of the committed utterance is in
            while not any(
                e["type"] == "transcript.final" and e["audio_end_ms"] >= 19_500 for _, e in first.events
            ):
                assert await first.receive() is not None
        await first.ws.close()
        second = await client.resume(first)
        assert second.created is not None and second.created["resumed"] is True
        await send_audio(second, to_bytes(dialogue.samples[cut:]))
        await second.close_session()
        rest = await events_until_closed(second, timeout=60)
    before = [e for _, e in first.events if e["type"] == "transcript.final"]
    after = of_type(rest, "transcript.final")
    assert before and after
    assert [f["seq"] for f in before + after] == list(range(1, len(before) + len(after) + 1))
    pairs = [
        (dialogue.speaker_at((w["start_ms"] + w["end_ms"]) / 2), w["speaker"])
        for f in before + after
        for w in f["words"]
    ]
    # one mapping of labels to voices holds on both sides of the reconnect: each keeps their number
    assert best_mapping_share(pairs) >= 0.8, pairs
    first_after = after[0]
    voice = dialogue.speaker_at(first_after["words"][0]["end_ms"])
    assert voice == 1  # alpha
    assert first_after["speaker"] in {
        f["speaker"] for f in before if dialogue.speaker_at(f["words"][0]["end_ms"]) == 1
    }
