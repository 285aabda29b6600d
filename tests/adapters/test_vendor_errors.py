"""What code written for the vendor waits for: replies in the shape of the event that asked, refusals that
name the client's event and the field at fault, conversation items announced as OpenAI announces them,
and Deepgram's refusals before the upgrade and on its routes in Deepgram's own shape."""

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
from fakes import FakeAsr
from support import API_KEY, make_settings, to_bytes

from .conftest import ws_base

ServerFactory = Callable[..., Awaitable[TestServer]]
RATE = 24000
REALTIME = "/v1/realtime?intent=transcription"


async def _next(
    ws: aiohttp.ClientWebSocketResponse, kind: str, seen: list[str] | None = None
) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            event: dict[str, Any] = json.loads(message.data)
            if seen is not None:
                seen.append(event["type"])
            if event["type"] == kind:
                return event


async def _send(ws: aiohttp.ClientWebSocketResponse, **event: Any) -> None:
    await ws.send_str(json.dumps(event))


def _silence(seconds: float) -> str:
    """Base64 PCM silence: a commit of it is an item with an empty transcript, as OpenAI answers it."""
    return base64.b64encode(to_bytes(np.zeros(int(RATE * seconds), dtype="<i2"))).decode()


@pytest.mark.parametrize("beta_connection", [False, True])
async def test_the_reply_follows_the_events_shape(make_server: ServerFactory, beta_connection: bool) -> None:
    server = await make_server(asr_engine=FakeAsr())
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        **({"OpenAI-Beta": "realtime=v1"} if beta_connection else {}),
    }
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_base(server) + REALTIME, headers=headers) as ws,
    ):
        await _next(ws, "transcription_session.created" if beta_connection else "session.created")
        await _send(ws, type="transcription_session.update", session={"turn_detection": None})
        beta = await _next(ws, "transcription_session.updated")
        await _send(ws, type="session.update", session={"type": "transcription"})
        ga = await _next(ws, "session.updated")
    assert beta["session"]["turn_detection"] is None and "input_audio_format" in beta["session"]
    assert (
        ga["session"]["type"] == "transcription" and ga["session"]["audio"]["input"]["turn_detection"] is None
    )


@pytest.mark.parametrize("beta", [False, True])
async def test_a_commit_announces_the_item_as_openai_does(make_server: ServerFactory, beta: bool) -> None:
    server = await make_server(asr_engine=FakeAsr())
    headers = {"Authorization": f"Bearer {API_KEY}", **({"OpenAI-Beta": "realtime=v1"} if beta else {})}
    seen: list[str] = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_base(server) + REALTIME, headers=headers) as ws,
    ):
        update = "transcription_session.update" if beta else "session.update"
        session: dict[str, Any] = (
            {"turn_detection": None}
            if beta
            else {"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        )
        await _send(ws, type=update, session=session)
        await _send(ws, type="input_audio_buffer.append", audio=_silence(0.3))
        await _send(ws, type="input_audio_buffer.commit")
        committed = await _next(ws, "input_audio_buffer.committed", seen)
        completed = await _next(ws, "conversation.item.input_audio_transcription.completed", seen)
    announced = (
        ["conversation.item.created"] if beta else ["conversation.item.added", "conversation.item.done"]
    )
    at = seen.index("input_audio_buffer.committed")
    assert seen[at + 1 : at + 1 + len(announced)] == announced
    assert committed["item_id"] == completed["item_id"]


async def test_every_refusal_names_the_event_and_the_param(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_base(server) + REALTIME, headers=headers) as ws,
    ):
        await _next(ws, "session.created")
        # a language the model lacks (refused by the model's check, not the event's schema)
        session = {"type": "transcription", "audio": {"input": {"transcription": {"language": "fr"}}}}
        await _send(ws, type="session.update", session=session, event_id="lang")
        language = (await _next(ws, "error"))["error"]
        await _send(
            ws,
            type="transcription_session.update",
            session={"input_audio_transcription": {"language": "fr"}},
            event_id="beta-lang",
        )
        beta_language = (await _next(ws, "error"))["error"]
    assert (language["event_id"], language["param"]) == ("lang", "session.audio.input.transcription.language")
    assert language["code"] == "unsupported_language"
    assert (beta_language["event_id"], beta_language["param"]) == (
        "beta-lang",
        "session.input_audio_transcription.language",
    )


async def test_a_refusal_that_ends_the_session_names_the_event(make_server: ServerFactory) -> None:
    # audio faster than real time, past the burst: the session ends, and its error names the append
    settings = make_settings(max_realtime_factor=1.0, realtime_burst_s=0.2)
    server = await make_server(settings, asr_engine=FakeAsr())
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_base(server) + REALTIME, headers=headers) as ws,
    ):
        await _next(ws, "session.created")
        await _send(ws, type="input_audio_buffer.append", audio=_silence(0.9), event_id="too-fast")
        error = (await _next(ws, "error"))["error"]
    assert error["code"] == "audio_rate_exceeded"
    assert (error["event_id"], error["param"]) == ("too-fast", "audio")
