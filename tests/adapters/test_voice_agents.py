"""Issue 21's "done when": a voice-agent loop written for Deepgram (endpointing, ``utterance_end_ms``) and
one written for OpenAI Realtime (commit, await ``.completed``) run through a noisy session, with the
official SDKs and the real tiny.en model, without hanging or cutting a turn.

Between the spoken turns come noise bursts: hiss, and a buzzy vowel-like hum that Silero takes for a
moment of voice (the kind of segment that holds no words). Every wait is bounded: a hang fails the test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from support import API_KEY, load_transcripts, read_pcm16, resample_pcm, silence, to_bytes

from streamer_bench.wer import words as normalized_words

from .conftest import http_base, ws_base

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import deepgram.listen.v1.client  # noqa: F401 (the SDK imports it lazily, on first use)
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")]

ServerFactory = Callable[..., Awaitable[TestServer]]
TURNS = ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav")
TURN_S = 30.0  # the longest any one turn may take to be answered


def noise_burst(seed: int) -> np.ndarray:
    """0.3 s of hiss, then 0.6 s of a 150 Hz buzz swelling at 4 Hz (int16, 16 kHz)."""
    rng = np.random.default_rng(seed)
    hiss = rng.normal(0, 0.1, 4800)
    t = np.arange(9600) / 16000
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    hum = 0.3 * buzz * (1 + np.sin(2 * np.pi * 4 * t)) / 2 * np.hanning(t.size) + rng.normal(0, 0.02, t.size)
    return (np.clip(np.concatenate([hiss, hum]), -1, 1) * 32767 * 0.5).astype(np.int16)


def whole(turn: str, name: str) -> bool:
    """The turn is the sentence, not a piece of it: nearly all its words, none missing at either end."""
    expected = normalized_words(load_transcripts()[name]["text"])
    heard = set(normalized_words(turn))
    return (
        len(heard & set(expected)) >= 0.8 * len(set(expected))
        and {expected[0], expected[-1]} & heard != set()
    )


# ---- Deepgram


class DeepgramAgent:
    """The loop a Deepgram voice agent runs: finals gathered into the user's turn, the turn over at
    ``speech_final`` or ``UtteranceEnd``; an empty turn (noise) is no turn. A ``Finalize`` before the agent
    speaks flushes what is open, and is answered by a ``from_finalize`` result."""

    def __init__(self) -> None:
        self.turns: asyncio.Queue[str] = asyncio.Queue()
        self.finalized: asyncio.Queue[None] = asyncio.Queue()
        self.heard: list[str] = []
        self.kinds: list[str] = []

    def end_turn(self) -> None:
        if self.heard:
            self.turns.put_nowait(" ".join(self.heard))
            self.heard = []

    async def listen(self, socket: Any) -> None:
        async for message in socket:
            self.kinds.append(message.type)
            if message.type == "Results" and message.is_final:
                if transcript := message.channel.alternatives[0].transcript:
                    self.heard.append(transcript)
                if message.speech_final:
                    self.end_turn()
                if message.from_finalize:
                    self.end_turn()
                    self.finalized.put_nowait(None)
            elif message.type == "UtteranceEnd":
                self.end_turn()


@contextlib.asynccontextmanager
async def _deepgram(server: TestServer) -> AsyncIterator[AsyncDeepgramClient]:
    base, ws = http_base(server), ws_base(server)
    environment = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    async with httpx.AsyncClient() as http:
        yield AsyncDeepgramClient(environment=environment, httpx_client=http, api_key=API_KEY)


async def _send(socket: Any, samples: np.ndarray) -> None:
    for i in range(0, samples.size, 1600):
        await socket.send_media(to_bytes(samples[i : i + 1600]))


async def test_a_deepgram_voice_agent_through_a_noisy_session(make_server: ServerFactory) -> None:
    server = await make_server()
    agent = DeepgramAgent()
    turns: list[str] = []
    noises: list[str] = []
    async with (
        _deepgram(server) as client,
        client.listen.v1.connect(
            model="nova-3",
            encoding="linear16",
            sample_rate=16000,
            channels=1,
            language="en-US",
            interim_results="true",
            punctuate="true",
            vad_events="true",
            endpointing=500,
            utterance_end_ms=1000,
        ) as socket,
    ):
        listening = asyncio.create_task(agent.listen(socket))
        try:
            for i, name in enumerate(TURNS):
                await _send(socket, np.concatenate([read_pcm16(name), silence(1.5)]))
                async with asyncio.timeout(TURN_S):
                    turns.append(await agent.turns.get())
                # the user breathes and the room hums while the agent answers; it flushes first
                await _send(socket, np.concatenate([noise_burst(i), silence(0.6)]))
                await socket.send_finalize()
                async with asyncio.timeout(TURN_S):
                    await agent.finalized.get()
                # whatever the noise became was answered before the Finalize was: not the next turn
                while not agent.turns.empty():
                    noises.append(agent.turns.get_nowait())
            await socket.send_close_stream()
            async with asyncio.timeout(TURN_S):
                await listening
        finally:
            listening.cancel()
    assert agent.turns.empty(), (turns, noises)
    for turn, name in zip(turns, TURNS, strict=True):
        assert whole(turn, name), (turn, name)
    # tiny.en may hear a word in the hum ("Mm-hmm."), a turn of its own; never a piece of a sentence
    assert not any(whole(n, name) for n in noises for name in TURNS), noises
    assert agent.kinds[-1] == "Metadata"


# ---- OpenAI Realtime

RATE = 24000


def _openai(server: TestServer) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=API_KEY, base_url=f"{http_base(server)}/v1", websocket_base_url=f"{ws_base(server)}/v1"
    )


async def _append(connection: Any, samples: np.ndarray) -> None:
    audio = resample_pcm(samples, RATE)
    for i in range(0, audio.size, RATE // 10):
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(to_bytes(audio[i : i + RATE // 10])).decode()
        )


async def _turn(connection: Any, samples: np.ndarray) -> Any:
    """A push-to-talk turn: its audio, a commit, and the item's ``.completed`` (bounded)."""
    await _append(connection, samples)
    await connection.input_audio_buffer.commit()
    item_id = None
    async with asyncio.timeout(TURN_S):
        async for event in connection:
            if event.type == "input_audio_buffer.committed":
                item_id = event.item_id
            elif (
                event.type == "conversation.item.input_audio_transcription.completed"
                and event.item_id == item_id
            ):
                return event
            elif event.type in ("error", "conversation.item.input_audio_transcription.failed"):
                raise AssertionError(event)
    raise AssertionError("the connection closed before the turn completed")


async def test_an_openai_voice_agent_through_a_noisy_session(make_server: ServerFactory) -> None:
    server = await make_server()
    transcripts: list[str] = []
    noises: list[str] = []
    async with (
        _openai(server) as client,
        client.realtime.connect(extra_query={"intent": "transcription"}) as c,
    ):
        await c.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": RATE},
                        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": None,
                    }
                },
            }
        )
        for i, name in enumerate(TURNS):
            transcripts.append((await _turn(c, np.concatenate([read_pcm16(name), silence(0.5)]))).transcript)
            # the user's push-to-talk catches a breath and the hum of the room: an item, and its answer
            noises.append((await _turn(c, np.concatenate([noise_burst(i), silence(0.3)]))).transcript)
    for transcript, name in zip(transcripts, TURNS, strict=True):
        assert whole(transcript, name), (transcript, name)
    # no turn leaked into a noise item (a cut turn would): they hold noise, if anything
    assert not any(whole(n, name) for n in noises for name in TURNS), noises
