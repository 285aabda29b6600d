"""Deepgram live ``multichannel=true`` (issue 22 item 5): every channel past the first is a session carried
by a :class:`SessionRun` like the connection's, fed and ended by the connection. However the stream ends
(CloseStream, server shutdown, a model failure on a further channel, the client gone), every channel's
session is detached and its task joined, the key's slots and quota are left right, and every final a
channel had precedes the stream's one last message, ``Metadata``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import eventually
from limits.conftest import quiet, tone
from support import API_KEY

from streamer.adapters.deepgram.channels import ChannelSession
from streamer.edge.handshake import REGISTRY, SERVICES
from streamer.session.run import SessionRun

from .conftest import start, ws_base

HEADERS = {"Authorization": f"Token {API_KEY}"}
STEREO = "encoding=linear16&sample_rate=16000&channels=2&multichannel=true"


def _stereo(left: bytes, right: bytes) -> bytes:
    """Two PCM16 channels of one length, interleaved."""
    both = np.stack([np.frombuffer(left, "<i2"), np.frombuffer(right, "<i2")], axis=1)
    return both.astype("<i2").tobytes()


async def _send(ws: aiohttp.ClientWebSocketResponse, pcm: bytes) -> None:
    step = 3200 * 2  # 0.1 s of stereo
    for i in range(0, len(pcm), step):
        await ws.send_bytes(pcm[i : i + step])


async def _receive_all(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Every message until the server closes."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while (msg := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
            messages.append(json.loads(msg.data))
    return messages


def _finals(messages: list[dict[str, Any]], channel: int) -> list[dict[str, Any]]:
    return [
        m for m in messages if m["type"] == "Results" and m["is_final"] and m["channel_index"][0] == channel
    ]


def _channel_runs(server: TestServer) -> list[ChannelSession]:
    return [run for run in server.app[REGISTRY].connections.values() if isinstance(run, ChannelSession)]


async def _released(server: TestServer, runs: list[ChannelSession]) -> None:
    """Every session of the stream detached and released, its slot given back, no end left running."""
    registry, services = server.app[REGISTRY], server.app[SERVICES]
    await eventually(lambda: not registry.sessions and not registry.connections, "every channel's release")
    for run in runs:
        assert run.carried is not None
        await asyncio.wait_for(asyncio.shield(run.carried), 5)
        assert run.ending is not None
    await eventually(lambda: len(registry.endings) == 0, "every end to be over")
    key_id = runs[0].session.key_id
    assert await services.backend.active_sessions(key_id) == 0


async def test_closestream_delivers_every_channels_finals_before_metadata_and_charges_each_once(
    servers: list[TestServer],
) -> None:
    server = await start(servers, FakeAsr(text="hello"))
    services = server.app[SERVICES]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{STEREO}&endpointing=false", headers=HEADERS) as ws,
    ):
        # one utterance on each channel, left open: only the end finalizes them
        await _send(ws, _stereo(tone(1.0) + quiet(0.5), quiet(0.5) + tone(1.0)))
        runs = _channel_runs(server)
        assert len(runs) == 1 and isinstance(runs[0], SessionRun)
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        messages = await _receive_all(ws)
    assert ws.close_code == 1000
    assert messages[-1]["type"] == "Metadata" and messages[-1]["channels"] == 2
    assert len(_finals(messages, 0)) == 1 and len(_finals(messages, 1)) == 1
    assert [m["type"] for m in messages].count("Metadata") == 1
    await _released(server, runs)
    # 1.5 s on each channel, charged once (a further channel's run settles the connection's quota)
    await eventually(lambda: not server.app[REGISTRY]._tasks, "the settlements")
    assert await services.backend.audio_used(runs[0].session.key_id) == pytest.approx(3.0, abs=0.01)


async def test_shutdown_mid_stream_delivers_a_further_channels_final_before_metadata(
    servers: list[TestServer],
) -> None:
    """Before, shutdown drained the further channel beside the connection's end and then cancelled its
    writer: a final still decoding when ``Metadata`` went out was lost."""
    server = await start(servers, FakeAsr(text="hello", delay=0.3))
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{STEREO}&endpointing=false", headers=HEADERS) as ws,
    ):
        await _send(ws, _stereo(quiet(1.0), tone(1.0)))  # the second channel speaks, still open
        runs = _channel_runs(server)
        await eventually(lambda: runs[0].session.audio_ms >= 900, "the audio to reach the channel")
        receiving = asyncio.create_task(_receive_all(ws))
        await servers.pop().close()
        messages = await receiving
    assert ws.close_code == 1001
    finals = _finals(messages, 1)
    assert len(finals) == 1 and finals[0]["channel"]["alternatives"][0]["transcript"] == "hello"
    assert messages[-1]["type"] == "Metadata"
    (run,) = runs
    assert run.ending is not None and run.ending.reason == "server_shutdown"
    assert run.carried is not None and run.carried.done()


async def test_a_model_failure_on_a_further_channel_ends_the_stream_and_releases_it(
    servers: list[TestServer],
) -> None:
    server = await start(servers, FakeAsr(fail=True), breaker_threshold=100)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{STEREO}", headers=HEADERS) as ws,
    ):
        runs = _channel_runs(server)
        # only the second channel speaks, and its utterance ends: its decode fails
        receiving = asyncio.create_task(_receive_all(ws))
        await _send(ws, _stereo(quiet(2.5), tone(1.0) + quiet(1.5)))
        messages = await receiving
    assert ws.close_code == 1013, messages  # model_unavailable: try again later
    assert [m["type"] for m in messages][-2:] == ["Error", "Metadata"], messages
    assert messages[-2]["variant"] == "model_unavailable"
    (run,) = runs
    assert run.ending is not None and run.ending.error is not None
    assert run.ending.error.code == "model_unavailable"
    await _released(server, runs)


async def test_a_client_gone_mid_stream_detaches_every_channel(servers: list[TestServer]) -> None:
    """(The test server cancels the handler of a client that left: the channel is let go of in the
    connection's ``finally``, without the end's steps; ``streamer serve`` ends it in the drain step.)"""
    server = await start(servers, FakeAsr(text="hello"))
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{STEREO}&endpointing=false", headers=HEADERS) as ws,
    ):
        await _send(ws, _stereo(tone(1.0), tone(1.0)))
        runs = _channel_runs(server)
        await eventually(lambda: runs[0].session.audio_ms >= 900, "the audio to reach the channel")
        await ws.close()
    await _released(server, runs)
    (run,) = runs
    assert run.ending is not None and not run.ending.finalize and not run.ending.farewell


async def test_a_further_channels_failure_while_closing_is_the_streams_error_counted_once(
    servers: list[TestServer],
) -> None:
    """The model fails on the utterance the end finalizes on a further channel: the stream closes with
    that error, not as a normal close, and the error is counted once, not once per session."""
    server = await start(servers, FakeAsr(fail=True), breaker_threshold=100)
    errors = server.app[SERVICES].metrics.errors.labels("model_unavailable")
    before = errors._value.get()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{STEREO}&endpointing=false", headers=HEADERS) as ws,
    ):
        await _send(ws, _stereo(quiet(1.0), tone(1.0)))  # only the further channel speaks, left open
        runs = _channel_runs(server)
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        messages = await _receive_all(ws)
    assert ws.close_code == 1013, messages
    assert [m["type"] for m in messages][-2:] == ["Error", "Metadata"], messages
    assert messages[-2]["variant"] == "model_unavailable"
    await _released(server, runs)
    assert errors._value.get() - before == 1


async def test_a_further_channels_slot_is_kept_alive_while_the_stream_runs(
    servers: list[TestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every channel's session takes one of the key's concurrent slots, and each slot expires unless it is
    refreshed. Before, only the first channel's was: past the slot's lifetime a stereo stream counted as one
    session, and the key could open more than its limit allowed."""
    monkeypatch.setattr("streamer.session.run.SLOT_TTL_S", 0.9)  # refreshed every 0.3 s
    # a reservation is held for the token's lifetime and a grace: both short here
    monkeypatch.setattr("streamer.session.registry.SLOT_GRACE_S", 0.1)
    server = await start(servers, FakeAsr(text="hello"), token_ttl_s=0.5)
    services = server.app[SERVICES]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{STEREO}&endpointing=false", headers=HEADERS) as ws,
    ):
        await _send(ws, _stereo(quiet(0.2), quiet(0.2)))
        (run,) = _channel_runs(server)
        key_id = run.session.key_id
        assert await services.backend.active_sessions(key_id) == 2
        await asyncio.sleep(2.0)  # more than two slot lifetimes
        assert await services.backend.active_sessions(key_id) == 2
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        await _receive_all(ws)
    await _released(server, [run])
