"""Issue 21 items 1 and 2, from outside: voice-agent loops written for OpenAI Realtime, with the official
SDK and the real tiny.en model, through a noisy session (hiss, breaths, a room's hum, quick turns).

Server VAD: the agent reacts to what the server commits. Push-to-talk: it appends, commits and awaits
``.completed`` for each turn, sometimes two turns committed before either is answered. Either way every
``speech_stopped`` / ``committed`` must end in exactly one ``completed`` or ``failed`` for its item, after
the item was announced: a loop awaiting it never hangs. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from support import load_transcripts, read_pcm16, resample_pcm, silence, to_bytes

from streamer_bench.wer import words as normalized_words

from .realtime_events import TERMINAL, check_order, openai_client

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]
RATE = 24000
CHUNK = RATE // 10
WAIT_S = 30.0
TURNS = ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav")
TRANSCRIPTION = {"intent": "transcription"}


def hiss(seconds: float, seed: int) -> np.ndarray:
    """White noise, loud (16 kHz int16)."""
    rng = np.random.default_rng(seed)
    return (np.clip(rng.normal(0, 0.15, int(seconds * 16000)), -1, 1) * 32767).astype(np.int16)


def breath(seed: int) -> np.ndarray:
    """0.5 s of low-passed noise swelling and fading, as a breath into the microphone."""
    rng = np.random.default_rng(seed)
    n = 8000
    noise = np.convolve(rng.normal(0, 1, n), np.ones(12) / 12, mode="same")  # a crude low-pass
    shaped = noise * np.hanning(n) * 0.4
    return (np.clip(shaped, -1, 1) * 32767).astype(np.int16)


def hum(seed: int) -> np.ndarray:
    """0.6 s of a 150 Hz buzz swelling at 4 Hz: Silero takes moments of it for voice."""
    rng = np.random.default_rng(seed)
    t = np.arange(9600) / 16000
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    wave = 0.3 * buzz * (1 + np.sin(2 * np.pi * 4 * t)) / 2 * np.hanning(t.size) + rng.normal(0, 0.02, t.size)
    return (np.clip(wave, -1, 1) * 32767 * 0.5).astype(np.int16)


def whole(transcript: str, name: str) -> bool:
    """The transcript is the sentence, not a piece of it."""
    expected = normalized_words(load_transcripts()[name]["text"])
    heard = set(normalized_words(transcript))
    return len(heard & set(expected)) >= 0.8 * len(set(expected)) and {expected[0], expected[-1]} <= heard


async def _append(connection: Any, samples: np.ndarray) -> None:
    audio = resample_pcm(samples, RATE)
    for i in range(0, audio.size, CHUNK):
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(to_bytes(audio[i : i + CHUNK])).decode()
        )
        # 4x real time: within the pacer's allowance after its burst (3x), so no append is refused
        await asyncio.sleep(0.025)


async def _session(connection: Any, turn_detection: dict[str, Any] | None) -> None:
    await connection.session.update(
        session={
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                    "turn_detection": turn_detection,
                }
            },
        }
    )


async def _answers(connection: Any, events: list[Any], item_ids: set[str]) -> dict[str, Any]:
    """Events (into ``events``) until each of ``item_ids`` has its terminal event (bounded)."""
    answered = {e.item_id: e for e in events if e.type in TERMINAL and e.item_id in item_ids}
    async with asyncio.timeout(WAIT_S):
        while not item_ids <= answered.keys():
            event = await connection.recv()
            events.append(event)
            if event.type == "error":
                raise AssertionError(event)
            if event.type in TERMINAL and event.item_id in item_ids:
                answered[event.item_id] = event
    return answered


async def test_a_server_vad_agent_through_noise_and_quick_turns(make_server: ServerFactory) -> None:
    server = await make_server()
    turns = [read_pcm16(name) for name in TURNS]
    stream = np.concatenate(
        [
            silence(0.3),
            turns[0],
            silence(0.8),
            hiss(0.3, 1),
            silence(0.8),
            breath(2),
            silence(0.8),
            hum(3),
            silence(0.8),
            turns[1],
            silence(0.65),  # a quick turn: just past the 500 ms that ends one
            turns[2],
            silence(1.2),
        ]
    )
    events: list[Any] = []
    async with openai_client(server) as client, client.realtime.connect(extra_query=TRANSCRIPTION) as c:
        await _session(c, {"type": "server_vad", "silence_duration_ms": 500})
        await _append(c, stream)
        # the clear's answer comes after every event of the audio before it (one outbox, in order)
        await c.input_audio_buffer.clear()
        async with asyncio.timeout(WAIT_S):
            while not events or events[-1].type != "input_audio_buffer.cleared":
                events.append(await c.recv())
                assert events[-1].type != "error", events[-1]
        committed = {e.item_id for e in events if e.type == "input_audio_buffer.committed"}
        answers = await _answers(c, events, committed)
    check_order(events, "ga")
    stopped = [e.item_id for e in events if e.type == "input_audio_buffer.speech_stopped"]
    assert len(stopped) == len(set(stopped)) == len(committed) >= len(TURNS)
    transcripts = [a.transcript for a in answers.values() if a.type == TERMINAL[0]]
    # each sentence is one item, whole, however the noise between was answered (empty, or a word)
    for name in TURNS:
        assert sum(whole(t, name) for t in transcripts) == 1, (name, transcripts)


async def test_a_push_to_talk_agent_through_noise_and_quick_turns(make_server: ServerFactory) -> None:
    server = await make_server()
    events: list[Any] = []
    heard: list[str] = []

    async def commit(samples: np.ndarray) -> str:
        """Append and commit one turn: its item id, from its ``committed``."""
        await _append(c, samples)
        await c.input_audio_buffer.commit()
        async with asyncio.timeout(WAIT_S):
            while True:
                event = await c.recv()
                events.append(event)
                assert event.type != "error", event
                if event.type == "input_audio_buffer.committed":
                    return str(event.item_id)

    async def turn(samples: np.ndarray) -> Any:
        item_id = await commit(samples)
        return (await _answers(c, events, {item_id}))[item_id]

    async with openai_client(server) as client, client.realtime.connect(extra_query=TRANSCRIPTION) as c:
        await _session(c, None)
        heard.append((await turn(np.concatenate([read_pcm16(TURNS[0]), silence(0.3)]))).transcript)
        for noise in (breath(4), np.concatenate([hiss(0.2, 5), silence(0.2)]), hum(6)):
            answer = await turn(noise)  # the button held over a breath or the room: an item, answered
            assert answer.type in TERMINAL
        # quick turns: the second is committed before the first is answered, with no pause after either
        first = await commit(read_pcm16(TURNS[1]))
        second = await commit(read_pcm16(TURNS[2]))
        answers = await _answers(c, events, {first, second})
        heard += [answers[first].transcript, answers[second].transcript]
    terminals = check_order(events, "ga")
    assert len(terminals) == 6
    for transcript, name in zip(heard, TURNS, strict=True):
        assert whole(transcript, name), (transcript, name)
