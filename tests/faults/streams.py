"""Small helpers for the fault tests: speech to send, events to collect, conditions to wait for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from support import read_pcm16, silence, to_bytes

from streamer.client import Stream

CHUNK = 3200  # 100 ms at 16 kHz


def utterance(name: str = "en_utt1.wav", lead_s: float = 0.3, tail_s: float = 1.0) -> bytes:
    """A fixture utterance between silences, as PCM16 bytes."""
    return to_bytes(silence(lead_s)) + to_bytes(read_pcm16(name)) + to_bytes(silence(tail_s))


async def send_audio(stream: Stream, pcm: bytes, speed: float = 10.0) -> None:
    """100 ms frames at ``speed`` x real time (the test settings allow 20x)."""
    for i in range(0, len(pcm), CHUNK):
        await stream.ws.send_bytes(pcm[i : i + CHUNK])
        await asyncio.sleep(0.1 / speed)


async def events_until_closed(stream: Stream, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Every event up to the close frame (``stream.close_code`` is set then)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while (event := await stream.receive()) is not None:
            events.append(event)
    return events


async def next_event(stream: Stream, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = await stream.receive()
            assert event is not None, f"closed while waiting for {kind}"
            if event["type"] == kind:
                return event


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]
