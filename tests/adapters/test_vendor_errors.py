"""What code written for the vendor waits for: replies in the shape of the event that asked, refusals that
name the client's event and the field at fault, conversation items announced as OpenAI announces them,
and Deepgram's refusals before the upgrade and on its routes in Deepgram's own shape."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import httpx
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, make_settings, to_bytes

from streamer.pipeline.asr import AsrRequest, AsrResult

from .conftest import Sentence, http_base, ws_base

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # deepgram-sdk imports websockets' legacy client
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)
    from deepgram import AsyncDeepgramClient
    from deepgram.core.api_error import ApiError
    from deepgram.environment import DeepgramClientEnvironment

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


# ---- Deepgram


class _Multilingual(FakeAsr):
    """A multilingual engine that records the language each request asked for."""

    def __init__(self) -> None:
        super().__init__(multilingual=True)
        self.asked: list[str | None] = []

    def languages(self) -> frozenset[str]:
        return frozenset({"en", "de"})

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        self.asked.extend(r.language for r in requests)
        return super().transcribe_batch(requests)


DG_AUDIO = "model=nova-3&encoding=linear16&sample_rate=16000"


@contextlib.asynccontextmanager
async def _deepgram(server: TestServer) -> AsyncIterator[AsyncDeepgramClient]:
    base, ws = http_base(server), ws_base(server)
    environment = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    async with httpx.AsyncClient() as http:
        yield AsyncDeepgramClient(environment=environment, httpx_client=http, api_key=API_KEY)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")
async def test_a_bad_deepgram_option_is_a_400_before_the_upgrade(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    async with _deepgram(server) as client:
        with pytest.raises(ApiError) as refused:
            async with client.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=4000):
                pass
    assert refused.value.status_code == 400
    headers = {"Authorization": f"Token {API_KEY}", "Upgrade": "websocket", "Connection": "Upgrade"}
    headers |= {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with aiohttp.ClientSession() as http:
        for query, says in (
            ("encoding=linear16&sample_rate=4000", "sample_rate"),
            (f"{DG_AUDIO}&language=xx", "language"),
            (f"{DG_AUDIO}&redact=pii", "redact='pii' is not supported"),
            (f"{DG_AUDIO}&search=x", "search is not supported"),
            (f"{DG_AUDIO}&no_such_option=1", "unknown query parameter"),
        ):
            async with http.get(f"{http_base(server)}/v1/listen?{query}", headers=headers) as r:
                body = await r.json()
                assert r.status == 400, (query, body)
                assert says in r.headers["dg-error"] and says in body["err_msg"], (query, body)
                assert body["err_code"] == "Bad Request" and body["request_id"] == r.headers["dg-request-id"]


async def test_without_a_language_deepgram_means_english(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    engine = _Multilingual()
    server = await make_server(asr_engine=engine)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{DG_AUDIO}", protocols=("token", API_KEY)) as ws,
    ):
        await ws.send_bytes(to_bytes(sentence.samples[:16000]))
        await ws.send_bytes(to_bytes(sentence.samples[16000:32000]))
        await ws.send_bytes(to_bytes(sentence.samples[32000:48000]))
        await ws.send_str('{"type": "CloseStream"}')
        async with asyncio.timeout(20):
            async for _ in ws:
                pass
    assert engine.asked and set(engine.asked) == {"en"}


async def _close_reason(ws: aiohttp.ClientWebSocketResponse) -> str:
    async with asyncio.timeout(20):
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.CLOSE:
                return str(message.extra)
            if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ""


async def test_only_undecodable_audio_closes_with_data_0000(make_server: ServerFactory) -> None:
    settings = make_settings(max_realtime_factor=1.0, realtime_burst_s=0.2)
    server = await make_server(settings, asr_engine=FakeAsr())
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{DG_AUDIO}", protocols=("token", API_KEY)) as ws,
    ):
        await ws.send_bytes(bytes(2 * 16000 * 9 // 10))  # 0.9 s at once: past the 0.2 s burst
        reason = await _close_reason(ws)
    assert ws.close_code == 1008
    assert reason.startswith("TOO_MANY_REQUESTS: audio_rate_exceeded"), reason


async def test_vendor_routes_answer_404_405_and_429_in_the_vendors_body(make_server: ServerFactory) -> None:
    settings = make_settings(auth_failures_per_min=2)
    server = await make_server(settings, asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{http_base(server)}/v1/listen/nothing") as r:
            body = await r.json()
            assert r.status == 404 and body["err_code"] == "NOT_FOUND" and "dg-error" in r.headers, body
        async with http.put(f"{http_base(server)}/v1/listen") as r:  # GET is live, POST pre-recorded
            body = await r.json()
            assert (
                r.status == 405 and body["err_code"] == "METHOD_NOT_ALLOWED" and "GET" in r.headers["Allow"]
            )
        async with http.get(f"{http_base(server)}/v1/audio/nothing") as r:
            error = (await r.json())["error"]
            assert (
                r.status == 404
                and error["type"] == "invalid_request_error"
                and "Invalid URL" in error["message"]
            )
        async with http.get(f"{http_base(server)}/v1/audio/transcriptions") as r:
            assert r.status == 405 and (await r.json())["error"]["type"] == "invalid_request_error"
        # wrong keys until the address is throttled: Deepgram's 429 on its route, OpenAI's on OpenAI's
        for _ in range(5):
            async with http.post(
                f"{http_base(server)}/v1/auth/grant", headers={"Authorization": "Token nope"}
            ) as r:
                throttled = await r.json()
                if r.status == 429:
                    break
        assert r.status == 429
        assert throttled["err_code"] == "TOO_MANY_REQUESTS" and "Retry-After" in r.headers
        async with http.get(f"{http_base(server)}/v1/models/whisper-1") as r:
            assert r.status == 429 and (await r.json())["error"]["type"] == "rate_limit_error"


async def test_an_unknown_realtime_query_parameter_is_refused(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = f"{http_base(server)}/v1/realtime?intent=transcription&model=gpt-realtime&voice=alloy"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        error = (await r.json())["error"]
    assert r.status == 400 and (error["code"], error["param"]) == ("unknown_parameter", "voice")
