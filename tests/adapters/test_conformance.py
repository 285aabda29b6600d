"""Every event the vendor surfaces send, over sessions that exercise their features, checked strictly
against the official SDKs' own models (``openai.types.realtime``, ``openai.types.beta.realtime``,
deepgram-sdk's listen v1 socket types): no field the model lacks, none it requires missing.
Real model, real audio (the corpus' first sentence)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from support import API_KEY, resample_pcm, silence, to_bytes

from .conftest import Sentence, ws_base
from .sdk_models import BETA_EVENTS, DEEPGRAM_EVENTS, GA_EVENTS, nonconformances

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]
RATE = 24000
OPENAI_AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def _openai_until(ws: aiohttp.ClientWebSocketResponse, seen: list[dict[str, Any]], kind: str) -> None:
    async with asyncio.timeout(30):
        while True:
            message = await ws.receive()

            assert message.type == aiohttp.WSMsgType.TEXT, message
            event = json.loads(message.data)
            seen.append(event)
            if event["type"] == kind:
                return


async def _send(ws: aiohttp.ClientWebSocketResponse, **event: Any) -> None:
    await ws.send_str(json.dumps(event))


async def _append(ws: aiohttp.ClientWebSocketResponse, samples: np.ndarray) -> None:
    step = RATE // 10
    for i in range(0, samples.size, step):
        chunk = base64.b64encode(to_bytes(samples[i : i + step])).decode()
        await _send(ws, type="input_audio_buffer.append", audio=chunk)


async def _openai_session(server: TestServer, sentence: Sentence, beta: bool) -> list[dict[str, Any]]:
    """Server VAD on a sentence, a bad event, a manual commit of the sentence, a clear: every event."""
    headers = {**OPENAI_AUTH, **({"OpenAI-Beta": "realtime=v1"} if beta else {})}
    url = f"{ws_base(server)}/v1/realtime?intent=transcription"
    audio = resample_pcm(sentence.samples, RATE)
    seen: list[dict[str, Any]] = []
    created = "transcription_session.created" if beta else "session.created"
    updated = "transcription_session.updated" if beta else "session.updated"
    if beta:
        vad: dict[str, Any] = {
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
        }
        manual: dict[str, Any] = {"turn_detection": None}
        update = "transcription_session.update"
    else:
        vad = {"type": "transcription", "audio": {"input": {"transcription": {"language": "en"}}}}
        manual = {"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        update = "session.update"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        await _openai_until(ws, seen, created)
        await _send(ws, type=update, session=vad, event_id="u1")
        await _openai_until(ws, seen, updated)
        await _append(ws, audio)
        await _openai_until(ws, seen, "conversation.item.input_audio_transcription.completed")
        await _send(ws, type="response.create", event_id="c0")  # not served in a transcription session
        await _openai_until(ws, seen, "error")
        await _send(ws, type=update, session=manual)
        await _openai_until(ws, seen, updated)
        await _append(ws, audio)
        await _send(ws, type="input_audio_buffer.commit")
        await _openai_until(ws, seen, "conversation.item.input_audio_transcription.completed")
        await _append(ws, silence(0.2, RATE))
        await _send(ws, type="input_audio_buffer.clear")
        await _openai_until(ws, seen, "input_audio_buffer.cleared")
    return seen


def _problems(events: list[dict[str, Any]], models: dict[str, Any]) -> dict[str, list[str]]:
    by_kind: dict[str, list[str]] = {}
    for event in events:
        by_kind.setdefault(str(event.get("type")), []).extend(nonconformances(event, models))
    return by_kind


async def test_every_ga_realtime_event_conforms(make_server: ServerFactory, sentence: Sentence) -> None:
    events = await _openai_session(await make_server(), sentence, beta=False)
    problems = _problems(events, GA_EVENTS)
    assert {"session.created", "session.updated", "error", "conversation.item.added"} <= set(problems)
    assert {"conversation.item.done", "input_audio_buffer.speech_started"} <= set(problems)
    bad = {kind: p for kind, p in problems.items() if p}
    assert not bad, json.dumps(bad, indent=1)


async def test_every_beta_realtime_event_conforms(make_server: ServerFactory, sentence: Sentence) -> None:
    events = await _openai_session(await make_server(), sentence, beta=True)
    problems = _problems(
        [e for e in events if not e["type"].startswith("transcription_session.")], BETA_EVENTS
    )
    assert {"error", "conversation.item.created", "input_audio_buffer.committed"} <= set(problems)
    bad = {kind: p for kind, p in problems.items() if p}
    assert not bad, json.dumps(bad, indent=1)


@pytest.mark.xfail(
    strict=True,
    reason="the SDK's beta union has no transcription_session.created (the beta API's first event), and "
    "its TranscriptionSession requires client_secret, a credential a live socket must not send back",
)
async def test_the_beta_session_events_conform(make_server: ServerFactory, sentence: Sentence) -> None:
    events = await _openai_session(await make_server(), sentence, beta=True)
    session_events = [e for e in events if e["type"].startswith("transcription_session.")]
    problems = _problems(session_events, BETA_EVENTS)
    assert {"transcription_session.created", "transcription_session.updated"} <= set(problems)
    bad = {kind: p for kind, p in problems.items() if p}
    assert not bad, json.dumps(bad, indent=1)


async def test_every_deepgram_message_conforms(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await make_server()
    query = (
        "model=nova-3&encoding=linear16&sample_rate=16000&interim_results=true&punctuate=true"
        "&vad_events=true&utterance_end_ms=1000"
    )
    frames: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{query}", protocols=("token", API_KEY)) as ws,
    ):
        for i in range(0, sentence.samples.size, 1600):
            await ws.send_bytes(to_bytes(sentence.samples[i : i + 1600]))
        await ws.send_str('{"type": "Configure"}')  # answered with Error, the stream goes on
        await ws.send_str('{"type": "Finalize"}')
        await ws.send_str('{"type": "CloseStream"}')
        async with asyncio.timeout(30):
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    frames.append(json.loads(message.data))
    problems = _problems(frames, DEEPGRAM_EVENTS)
    assert {"Results", "Metadata", "SpeechStarted", "UtteranceEnd", "Error"} <= set(problems)
    bad = {kind: p for kind, p in problems.items() if p}
    assert not bad, json.dumps(bad, indent=1)
