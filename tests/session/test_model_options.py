"""A protocol v1 session's model options (``prompt``, ``keywords``, ``temperature``, ``logprobs``,
``decoding``) reach every request it makes of the model, and its finals carry what was asked for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fakes import FakeAsr
from support import make_settings

from session.doubles import ScriptedVad, Sink, services
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.protocol import SessionConfig, SessionConfigPatch
from streamer.session.outbox import Outbox
from streamer.session.runtime import StreamSession

FRAME_8K = np.zeros(160, dtype="<i2").tobytes()  # 20 ms at 8 kHz: one scripted VAD window per push


@dataclass
class RecordingAsr(FakeAsr):
    """Answers with the decode details a real model gives, and keeps every request."""

    requests: list[AsrRequest] = field(default_factory=list)

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        self.requests.extend(requests)
        return [
            AsrResult(
                text="hello there.",
                language="en",
                avg_logprob=-0.2,
                no_speech_prob=0.01,
                temperature=r.temperature,
                tokens=(1, 2, 3),
                logprobs=((" hello", -0.1), (" there", -0.3), (".", -0.2)) if r.logprobs else None,
            )
            for r in requests
        ]


async def _finals(config: SessionConfig, asr: RecordingAsr) -> list[dict[str, Any]]:
    vad = ScriptedVad(script=[1.0] * 20 + [0.0] * 60)
    async with services(asr=asr, vad=vad, settings=make_settings(batching=False)) as svc:
        session = StreamSession("sess_opts", "key", config, svc)
        sink = Sink()
        outbox = Outbox(sink, maxsize=256)
        writer = asyncio.create_task(outbox.run())
        session.attach(outbox)
        try:
            while vad.calls < 80:
                await session.push_audio(FRAME_8K)
            async with asyncio.timeout(10):
                await session.drain()
                await outbox.finish()
            await asyncio.wait_for(writer, 10)
        finally:
            writer.cancel()
            await session.abort()
    return [m for m in map(json.loads, sink.sent) if m["type"] == "transcript.final"]


async def test_the_options_reach_the_model_and_the_finals_carry_what_was_asked() -> None:
    asr = RecordingAsr()
    config = SessionConfig(
        sample_rate=8000,
        language="en",
        interim_results=False,
        prompt="Quilter's meeting.",
        keywords=["Quilter", "kubectl"],
        temperature=0.4,
        logprobs=True,
        decoding=True,
    )
    (final,) = await _finals(config, asr)
    assert asr.requests
    for request in asr.requests:
        assert (request.prompt, request.hotwords) == ("Quilter's meeting.", "Quilter, kubectl")
        assert (request.temperature, request.logprobs) == (0.4, True)
    assert final["logprobs"] == [
        {"token": " hello", "logprob": -0.1},
        {"token": " there", "logprob": -0.3},
        {"token": ".", "logprob": -0.2},
    ]
    assert final["decoding"] == {
        "avg_logprob": -0.2,
        "compression_ratio": 1.0,
        "no_speech_prob": 0.01,
        "temperature": 0.4,
        "tokens": [1, 2, 3],
    }


async def test_finals_leave_the_details_out_unless_asked() -> None:
    asr = RecordingAsr()
    (final,) = await _finals(SessionConfig(sample_rate=8000, language="en", interim_results=False), asr)
    assert "logprobs" not in final and "decoding" not in final
    assert all(
        (r.prompt, r.hotwords, r.temperature, r.logprobs) == ("", "", 0.0, False) for r in asr.requests
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 1.5},
        {"temperature": -0.1},
        {"keywords": [""]},
        {"keywords": ["x" * 101]},
        {"prompt": "x" * 2001},
    ],
)
def test_bad_model_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SessionConfig.model_validate(bad)
    with pytest.raises(ValueError):
        SessionConfigPatch.model_validate(bad).apply(SessionConfig())


def test_good_model_options_are_taken_and_patched() -> None:
    config = SessionConfig(
        prompt="Hi.", keywords=[" kubectl "], temperature=0.5, logprobs=True, decoding=True
    )
    assert config.keywords == ["kubectl"]
    patched = SessionConfigPatch(temperature=0.0, prompt="").apply(config)
    assert (patched.prompt, patched.temperature, patched.keywords, patched.logprobs) == (
        "",
        0.0,
        ["kubectl"],
        True,
    )
