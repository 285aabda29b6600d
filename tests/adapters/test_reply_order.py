"""A vendor surface's replies to client events go through the outbox, in order with the results (issue 22,
D5): an error cannot overtake a result queued before it, and ``previous_item_id`` follows the order the
client sees. (They used to be written beside the outbox, from the reader's task.)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from session.doubles import services

from streamer.adapters.openai.socket import RealtimeConnection
from streamer.adapters.openai.state import RealtimeState
from streamer.errors import BadRequestError
from streamer.protocol import SpeechStopped
from streamer.session.registry import SessionRegistry


class _Wire:
    """A WebSocket's sending side whose first send waits until released: what is queued waits behind it."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.first_send = asyncio.Event()

    async def send_str(self, text: str) -> None:
        if not self.first_send.is_set():
            self.first_send.set()
            await self.release.wait()
        self.sent.append(json.loads(text))


async def test_replies_keep_their_place_behind_queued_results() -> None:
    async with services() as svc:
        registry = SessionRegistry(svc)
        state = RealtimeState()
        session = registry.open("sess_order", "key", state.config(svc))
        wire = _Wire()
        connection = RealtimeConnection(registry, wire, session, state, beta=False)  # type: ignore[arg-type]
        writer = asyncio.create_task(connection.outbox.run())

        async with asyncio.timeout(5):
            await connection.opening([], resumed=False)  # queued: the writer sends it
            await wire.first_send.wait()  # session.created is on its way; the client is slow to take it
        # a result of the audio (an utterance committed), then the reader's replies to two client events
        await connection.outbox.put(SpeechStopped(segment_id=1, audio_end_ms=900))
        await connection.report(BadRequestError("a refused event"))
        await connection.reply(lambda: connection.events.committed("item_empty"))

        wire.release.set()
        await connection.outbox.finish()
        async with asyncio.timeout(5):
            await writer

    kinds = [m["type"] for m in wire.sent]
    assert kinds == [
        "session.created",
        "input_audio_buffer.speech_stopped",  # server VAD, OpenAI's default
        "input_audio_buffer.committed",
        "conversation.item.added",  # GA announces the user item as OpenAI does
        "conversation.item.done",
        "error",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ], kinds
    first, last = wire.sent[2], wire.sent[6]
    assert first["previous_item_id"] is None
    assert last["item_id"] == "item_empty" and last["previous_item_id"] == first["item_id"]
