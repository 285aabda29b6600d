"""What an OpenAI Realtime client may rely on about the order of events, as a check over a recorded
session (events as the official SDK parses them)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from support import API_KEY

from .conftest import http_base, ws_base

# how OpenAI announces an item, in this order, before any of its transcription events
ANNOUNCED = {
    "ga": ("input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"),
    "beta": ("input_audio_buffer.committed", "conversation.item.created"),
}
TERMINAL = (
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
)
ABOUT_ITEM = ("conversation.item.input_audio_transcription.delta", *TERMINAL)


def openai_client(server: TestServer) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=API_KEY, base_url=f"{http_base(server)}/v1", websocket_base_url=f"{ws_base(server)}/v1"
    )


def item_of(event: Any) -> str | None:
    if event.type in ("conversation.item.created", "conversation.item.added", "conversation.item.done"):
        return str(event.item.id)
    return getattr(event, "item_id", None)


def check_order(events: list[Any], shape: str) -> dict[str, str]:
    """Assert OpenAI's order for every item: a stopped item is committed; an item is announced in full
    before any delta or terminal event; it then gets exactly one terminal event (``completed`` or
    ``failed``) and nothing after it. Returns each committed item's terminal event type."""
    announced: dict[str, list[str]] = {}
    terminal: dict[str, str] = {}
    stopped: list[str] = []
    for i, event in enumerate(events):
        item_id = str(item_of(event))
        if event.type == "input_audio_buffer.speech_stopped":
            stopped.append(item_id)
        elif event.type in ANNOUNCED[shape]:
            announced.setdefault(item_id, []).append(event.type)
        elif event.type in ABOUT_ITEM:
            said = announced.get(item_id, [])
            assert said == list(ANNOUNCED[shape]), (i, event.type, item_id, said)
            assert item_id not in terminal, (i, event.type, "after the item's terminal event")
            if event.type in TERMINAL:
                terminal[item_id] = event.type
    assert set(stopped) <= set(announced), "speech stopped and its item was never committed"
    for item_id in announced:
        assert item_id in terminal, (item_id, "committed and never answered")
    return terminal
