"""A model that raises or hangs, as a session sees it: a retryable ``model_unavailable`` and 1013, fast.

Real speech through the real VAD, fake models with knobs. A server whose model fails must not disturb a
healthy server in the same process (and event loop), and a hung model call is cut off after
``Settings.model_timeout_s`` (the batcher's call timeout, enforced by its watchdog).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from faults.streams import events_until_closed, eventually, of_type, send_audio, utterance
from streamer.client import ClientError, StreamerClient
from streamer.edge.handshake import SERVICES

ServerFactory = Callable[..., Awaitable[TestServer]]


async def _talk(server: TestServer, pcm: bytes) -> tuple[list[dict[str, Any]], int | None, float]:
    """Speak ``pcm`` then ``session.close``; every event, the close code, when the audio was all sent."""
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        async with stream:
            done = 0.0

            async def speak() -> None:
                nonlocal done
                try:
                    await send_audio(stream, pcm)
                    done = time.monotonic()
                    await stream.close_session()
                except ConnectionError:
                    done = done or time.monotonic()  # the server closed first: fine

            speaker = asyncio.create_task(speak())
            events = await events_until_closed(stream)
            await speaker
            return events, stream.close_code, done


def _assert_model_unavailable(events: list[dict[str, Any]], code: int | None) -> None:
    errors = of_type(events, "error")
    assert len(errors) == 1, events
    assert errors[0] == {
        "type": "error",
        "code": "model_unavailable",
        "message": errors[0]["message"],
        "retryable": True,
    }
    assert events[-1]["type"] == "session.closed" and events[-1]["reason"] == "model_unavailable"
    assert code == 1013
    assert not of_type(events, "transcript.final")  # nothing made up


async def test_failing_engine_fails_its_sessions_and_spares_a_healthy_server(
    make_server: ServerFactory,
) -> None:
    failing = await make_server(make_settings(breaker_threshold=3), asr_engine=FakeAsr(fail=True))
    healthy_asr = FakeAsr(text="hello world")
    healthy = await make_server(make_settings(), asr_engine=healthy_asr)
    pcm = utterance()

    # side by side, in the same process and loop
    (bad, bad_code, _), (good, good_code, _) = await asyncio.gather(_talk(failing, pcm), _talk(healthy, pcm))
    _assert_model_unavailable(bad, bad_code)
    assert [f["text"] for f in of_type(good, "transcript.final")] == ["hello world"]
    assert not of_type(good, "error") and good[-1]["reason"] == "client_closed" and good_code == 1000

    # the failing server's breaker is open now: new sessions are refused up front, retryable
    assert failing.app[SERVICES].breakers["asr"].state.value == "open"
    async with StreamerClient(base_url(failing), api_key=API_KEY) as client:
        try:
            await client.create_session()
            raise AssertionError("a session was created while the model's breaker is open")
        except ClientError as e:
            assert (e.status, e.code) == (503, "model_unavailable") and e.retry_after, e
    # the healthy one keeps serving
    good, good_code, _ = await _talk(healthy, pcm)
    assert len(of_type(good, "transcript.final")) == 1 and good_code == 1000


async def test_hung_engine_is_cut_off_after_the_call_timeout(make_server: ServerFactory) -> None:
    asr = FakeAsr(hang=True)
    settings = make_settings(model_timeout_s=0.5)  # the batcher's call timeout (default 30 s)
    server = await make_server(settings, asr_engine=asr)
    services = server.app[SERVICES]
    try:
        events, code, sent = await _talk(server, utterance())
        _assert_model_unavailable(events, code)
        # the utterance ended in the audio ~1 s before it was all sent; the error follows within the
        # timeout plus the watchdog's period (0.25 s) and some slack
        closed_at = time.monotonic()
        assert closed_at - sent < settings.model_timeout_s + 1.5
        assert services.asr_batcher.hung

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base_url(server)}/readyz") as r:
                assert r.status == 503 and (await r.json())["checks"]["asr_model"] == "not responding"

        asr.hang = False
        asr.release()  # the stuck call returns: the model thread is free, and the server serves again
        await eventually(lambda: not services.asr_batcher.hung, "the model thread to come back")
        events, code, _ = await _talk(server, utterance())
        assert [f["text"] for f in of_type(events, "transcript.final")] == ["hello world"] and code == 1000
    finally:
        asr.release()
