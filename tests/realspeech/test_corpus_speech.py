"""Real-sounding speech end to end: piper sentences with pauses at commas, in noise and on the phone band.

The committed corpus pieces (tests/fixtures/corpus, made by ``python -m streamer_bench.corpus
--fixtures``) stream through a server running the real tiny.en model. What must hold on any machine:
exactly one final per spoken sentence (none lost, none cut in two at a comma), and most of the sentence's
content words in that final. Exact text is not asserted: int8 matrix products round differently on
different CPUs (AVX-512 VNNI, AVX2, plain SSE and ARM kernels), and greedy decoding turns a tiny score
difference into a different word, so a WER tuned on one machine is not a bound on another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer
from support import make_settings

from realspeech.streaming import committed, finals_of, stream_item
from streamer_bench.scoring import assign, content_recall
from streamer_bench.wer import wer

pytestmark = pytest.mark.slow

# Content-word recall (the share of a sentence's content words found in its final), and whole-stream WER.
# Measured on 8 runs here (Xeon with AVX-512 VNNI and AMX, 2 busy cores; the default kernels, then
# CTranslate2 forced to AVX2, AVX and generic code, then MKL limited to AVX2, SSE4.2 and AVX-512 without
# VNNI, each one run; the server code moved under these runs as the decode fallback landed):
#   clean: every sentence's content words heard in all 8 runs; stream WER 0 (7 runs) or 0.016 (1 of 64
#          words, "then" dropped).
#   snr20: recall 0.67 ("Please, keep your boys down.") and 1.0 for the sentences with one final; stream WER
#          0.08 (2 of 25 words) in all 8 runs.
#   tel8k: recall 0.67 or 1.0 for the sentences with one final; stream WER 0.04 (1 of 25 words) when no
#          sentence was lost, 0.84 when two were.
# The bounds leave one more missed content word in the shortest sentence (3 content words) and about four
# more wrong words per stream than the worst run seen, so another CPU's rounding passes and a garbled or
# missing sentence does not.
MIN_RECALL = {"clean": 0.6, "snr20": 0.5, "tel8k": 0.5}
MIN_MEAN_RECALL = {"clean": 0.85, "snr20": 0.7, "tel8k": 0.7}
MAX_STREAM_WER = {"clean": 0.15, "snr20": 0.3, "tel8k": 0.3}


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    # accuracy, not admission, is under test: a busy CI machine must not turn the session away
    return await make_server(make_settings(saturation_latency_s=1000.0))


@pytest.mark.parametrize("condition", ["clean", "snr20", "tel8k"])
async def test_every_sentence_yields_one_final_with_its_words(server: TestServer, condition: str) -> None:
    item = committed().item(condition)
    events = await asyncio.wait_for(stream_item(server, item), 100)
    finals = finals_of(events)
    texts = [f["text"] for f in finals]
    assert [f["seq"] for f in finals] == list(range(1, len(finals) + 1))
    problems = []  # every problem at once: one streaming run says all that is wrong
    recalls = []
    for sentence, owned in zip(item.sentences, assign(finals, item.sentences), strict=True):
        if len(owned) != 1:
            problems.append(f"{len(owned)} finals for {sentence.text!r}: {[f['text'] for f in owned]}")
            continue
        recalls.append(content_recall(sentence, owned[0]["text"]))
        if recalls[-1] < MIN_RECALL[condition]:
            problems.append(f"content words missing: {sentence.text!r} -> {owned[0]['text']!r}")
    if len(finals) > len(item.sentences) and not problems:
        problems.append(f"finals outside any sentence: {texts}")
    if recalls and sum(recalls) / len(recalls) < MIN_MEAN_RECALL[condition]:
        problems.append(f"mean content-word recall {sum(recalls) / len(recalls):.2f}")
    stream_wer = wer(" ".join(s.text for s in item.sentences), " ".join(texts))
    if stream_wer > MAX_STREAM_WER[condition]:
        problems.append(f"stream WER {stream_wer:.3f} > {MAX_STREAM_WER[condition]}")
    problems += [f"{e['type']} {e['code']}" for e in events if e["type"] == "error"]
    problems += [f"warning {e['code']}" for e in events if e.get("code") == "unrecognized_speech"]
    assert not problems, (problems, texts)
    assert events[-1]["finals"] == len(item.sentences)


@pytest.mark.parametrize("kind", ["hum", "breaths", "music"])
async def test_no_finals_from_nonspeech(server: TestServer, kind: str) -> None:
    item = committed().item(f"nonspeech_{kind}")
    events = await asyncio.wait_for(stream_item(server, item), 60)
    assert finals_of(events) == []
    assert events[-1]["finals"] == 0
    # nobody spoke, so no sentence went missing either
    assert [e for e in events if e["type"] == "warning" and e["code"] == "unrecognized_speech"] == []
