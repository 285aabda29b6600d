"""Issue 21 item 8, ``noise_reduction``: no filter runs in this server's audio path, so the option is
refused, in OpenAI's error shape, wherever a session can name it before its audio flows: the GA client
secret, the beta transcription session, and a ``session.update`` on the socket (which keeps the session as
it was). ``null`` asks for nothing and is accepted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr

from .realtime_events import openai_client

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.mark.parametrize("kind", ["near_field", "far_field"])
async def test_noise_reduction_is_refused_before_audio_flows(make_server: ServerFactory, kind: str) -> None:
    server = await make_server(asr_engine=FakeAsr())
    async with openai_client(server) as client:
        with pytest.raises(openai.BadRequestError) as ga:
            await client.realtime.client_secrets.create(
                session={"type": "transcription", "audio": {"input": {"noise_reduction": {"type": kind}}}}
            )
        with pytest.raises(openai.BadRequestError) as beta:
            await client.beta.realtime.transcription_sessions.create(
                input_audio_noise_reduction={"type": kind}
            )
        accepted = await client.realtime.client_secrets.create(
            session={"type": "transcription", "audio": {"input": {"noise_reduction": None}}}
        )
        async with client.realtime.connect(extra_query={"intent": "transcription"}) as c:
            await c.session.update(
                session={"type": "transcription", "audio": {"input": {"noise_reduction": {"type": kind}}}},
                event_id="nr",
            )
            events: list[Any] = []
            async with asyncio.timeout(10):
                while not events or events[-1].type != "error":
                    events.append(await c.recv())
    for refused, param in (
        (ga, "session.audio.input.noise_reduction"),
        (beta, "session.input_audio_noise_reduction"),
    ):
        body: Any = refused.value.body
        assert (body["code"], body["param"], body["type"]) == (
            "unsupported_parameter",
            param,
            "invalid_request_error",
        )
    assert accepted.session.audio.input.noise_reduction is None
    error = events[-1].error
    assert (error.code, error.param, error.event_id) == (
        "unsupported_parameter",
        "session.audio.input.noise_reduction",
        "nr",
    )
    assert "session.updated" not in [e.type for e in events]
