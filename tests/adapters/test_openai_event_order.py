"""Issue 21 item 2 (OpenAI's part): transcription events only for an item the client has seen, in wire
order. OpenAI announces an item (``input_audio_buffer.committed``, then ``conversation.item.created`` in
the beta shape, ``conversation.item.added`` and ``.done`` in the GA one) before any of its transcription
events; code written for it looks the item up by id, and a delta for an id it has never seen is lost.

A fast engine (``FakeAsr``: its partials and final are ready at once) is where a result can overtake
its commit. Recorded with the official SDK, every wait bounded.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import make_settings, resample_pcm, silence, to_bytes

from .conftest import Sentence
from .realtime_events import ABOUT_ITEM, ANNOUNCED, TERMINAL, check_order, openai_client

ServerFactory = Callable[..., Awaitable[TestServer]]
RATE = 24000
STEP = RATE // 20  # 50 ms an append, as a microphone sends
WAIT_S = 20.0
TEXT = "hello there, how are you"


async def _append(connection: Any, samples: np.ndarray) -> None:
    for i in range(0, samples.size, STEP):
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(to_bytes(samples[i : i + STEP])).decode()
        )
        # a client that sends as audio comes: the server's partials have time to be decoded between
        await asyncio.sleep(0.01)


async def _record(connection: Any, events: list[Any], terminals: int) -> None:
    """Events into ``events`` until ``terminals`` items have their terminal event (bounded)."""
    async with asyncio.timeout(WAIT_S):
        async for event in connection:
            events.append(event)
            if event.type == "error":
                raise AssertionError(event)
            if sum(e.type in TERMINAL for e in events) == terminals:
                return
    raise AssertionError("the connection closed early")


def _speech(sentence: Sentence) -> np.ndarray:
    return resample_pcm(np.concatenate([sentence.samples, silence(0.5)]), RATE)


async def _fast_server(make_server: ServerFactory) -> TestServer:
    # partials every 100 ms of speech: several arrive while the utterance is open
    return await make_server(make_settings(partial_interval_ms=100), asr_engine=FakeAsr(text=TEXT))


async def test_server_vad_deltas_follow_their_items_announcement(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await _fast_server(make_server)
    events: list[Any] = []
    async with (
        openai_client(server) as client,
        client.realtime.connect(extra_query={"intent": "transcription"}) as c,
    ):
        await c.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}},
            }
        )
        sending = asyncio.create_task(_append(c, _speech(sentence)))
        await _record(c, events, 1)
        await sending
    check_order(events, "ga")
    deltas = [e.delta for e in events if e.type == ABOUT_ITEM[0]]
    completed = next(e for e in events if e.type == TERMINAL[0])
    # nothing said before the commit is lost: the deltas still make up the whole transcript
    assert deltas and "".join(deltas) == completed.transcript == TEXT


async def test_manual_commit_deltas_follow_the_commit(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await _fast_server(make_server)
    events: list[Any] = []
    async with (
        openai_client(server) as client,
        client.realtime.connect(extra_query={"intent": "transcription"}) as c,
    ):
        await c.session.update(
            session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        )
        await _append(c, _speech(sentence))
        await c.input_audio_buffer.commit()
        await _record(c, events, 1)
    check_order(events, "ga")
    assert "".join(e.delta for e in events if e.type == ABOUT_ITEM[0]) == TEXT


async def test_beta_deltas_follow_item_created(make_server: ServerFactory, sentence: Sentence) -> None:
    server = await _fast_server(make_server)
    events: list[Any] = []
    async with (
        openai_client(server) as client,
        client.beta.realtime.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as c,
    ):
        await c.transcription_session.update(
            session={"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}
        )
        sending = asyncio.create_task(_append(c, _speech(sentence)))
        await _record(c, events, 1)
        await sending
    assert events[0].type == "transcription_session.created"
    check_order(events, "beta")


@pytest.mark.parametrize("shape", ["ga", "beta"])
def test_the_order_check_catches_a_delta_before_its_commit(shape: str) -> None:
    """The check itself: a delta for an item not yet announced fails it."""

    def event(kind: str, item_id: str) -> SimpleNamespace:  # an event, as the SDK reads it
        return SimpleNamespace(type=kind, item_id=item_id, item=SimpleNamespace(id=item_id))

    early = [event(ABOUT_ITEM[0], "item_1"), *(event(kind, "item_1") for kind in ANNOUNCED[shape])]
    with pytest.raises(AssertionError):
        check_order(early, shape)
    twice = [
        *(event(kind, "item_1") for kind in ANNOUNCED[shape]),
        event(TERMINAL[0], "item_1"),
        event(TERMINAL[1], "item_1"),
    ]
    with pytest.raises(AssertionError):
        check_order(twice, shape)


async def test_a_failed_model_fails_each_committed_item_before_its_error(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    """A model that fails ends the session; an agent awaiting its item hears ``.failed`` for that item
    (then the ``error``), not only an error it cannot tie to the turn it waits for."""
    server = await make_server(asr_engine=FakeAsr(fail=True))
    events: list[Any] = []
    async with (
        openai_client(server) as client,
        client.realtime.connect(extra_query={"intent": "transcription"}) as c,
    ):
        await c.session.update(
            session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        )
        await _append(c, _speech(sentence))
        await c.input_audio_buffer.commit()
        async with asyncio.timeout(WAIT_S):
            async for event in c:
                events.append(event)
                if event.type == "error":
                    break
    check_order(events, "ga")
    committed = next(e for e in events if e.type == "input_audio_buffer.committed")
    failed = next(e for e in events if e.type == TERMINAL[1])
    assert failed.item_id == committed.item_id and failed.error.code == events[-1].error.code
