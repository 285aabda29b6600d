"""Three ``streamer serve`` instances on one Redis behind HAProxy (deploy/haproxy/haproxy.cfg), real model.

Sessions go through the balancer only: POST /v1/sessions and the WebSocket are routed independently (no
sticky routing), so a session is often started on one instance and streamed on another. Every session
must get its finals, the sessions must spread over the instances, and an instance that gets SIGTERM must
leave the rotation while the sessions it holds are drained (open utterance finalized, close 1001) and the
others go on undisturbed.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import pytest
from faults.streams import CHUNK, events_until_closed, next_event, of_type
from support import load_transcripts, read_pcm16, silence, to_bytes, wer

from deploy.cluster import Cluster, Instance
from deploy.conftest import StartCluster
from streamer.client import Stream, StreamerClient

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SESSIONS = 6
NAMES = ["en_utt1.wav", "en_utt2.wav", "en_utt3.wav"]
SPEED = 5.0  # x real time; the cluster allows 20


async def _send(stream: Stream, pcm: bytes) -> None:
    for i in range(0, len(pcm), CHUNK):
        await stream.ws.send_bytes(pcm[i : i + CHUNK])
        await asyncio.sleep(0.1 / SPEED)


def _speech(name: str, tail_s: float) -> bytes:
    return to_bytes(silence(0.3)) + to_bytes(read_pcm16(name)) + to_bytes(silence(tail_s))


async def _connect_all(client: StreamerClient) -> list[Stream]:
    # one after another, so that least-connections balancing sees each session before the next
    return [await client.connect({"language": "en"}) for _ in range(SESSIONS)]


async def _logged_sockets(cluster: Cluster, count: int) -> list[tuple[str, str, str]]:
    """HAProxy's request log once ``count`` WebSockets are in it (each is logged when it closes)."""
    deadline = time.monotonic() + 10
    while True:
        requests = cluster.requests()
        if sum(1 for *_, request in requests if request == "GET /v1/stream") >= count:
            break
        assert time.monotonic() < deadline, requests
        await asyncio.sleep(0.1)
    # the shipped log format leaves query strings, and so tokens, out of the log
    assert "token=" not in cluster.haproxy_log.read_text()
    return requests


def _check_final(final: dict[str, object], name: str) -> None:
    expected = load_transcripts()[name]["text"]
    assert wer(expected, str(final["text"])) <= 0.25, (name, final["text"])


@pytest.mark.timeout(300)
async def test_sessions_spread_over_instances_and_every_final_arrives(make_cluster: StartCluster) -> None:
    async with make_cluster(3) as cluster, aiohttp.ClientSession() as http:
        async with StreamerClient(cluster.url, api_key=cluster.api_key) as client:
            streams = await _connect_all(client)
            active = await cluster.wait_active(http, SESSIONS)
            # every instance carries sessions: the balancer spread them, none is idle
            assert all(n >= 1 for n in active.values()), active

            async def speak(index: int, stream: Stream) -> list[dict[str, object]]:
                names = [NAMES[index % 3], NAMES[(index + 1) % 3]]
                for name in names:
                    await _send(stream, _speech(name, tail_s=1.0))
                await stream.close_session()
                return await events_until_closed(stream, timeout=60)

            try:
                results = await asyncio.gather(*(speak(i, s) for i, s in enumerate(streams)))
            except (AssertionError, TimeoutError) as e:
                raise AssertionError(f"{e!r}\n{cluster.diagnostics()}") from e
            finally:
                for stream in streams:
                    await stream.ws.close()
        requests = await _logged_sockets(cluster, SESSIONS)

    # no stickiness: on some client connection, the session was started on one instance and streamed on
    # another (aiohttp reuses the POST's connection for the WebSocket)
    by_client: dict[str, set[str]] = {}
    for client_address, server, _ in requests:
        by_client.setdefault(client_address, set()).add(server)
    assert any(len(servers) > 1 for servers in by_client.values()), requests

    for index, events in enumerate(results):
        finals = of_type(events, "transcript.final")
        assert [f["seq"] for f in finals] == [1, 2], events
        for final, name in zip(finals, [NAMES[index % 3], NAMES[(index + 1) % 3]], strict=True):
            _check_final(final, name)
        assert events[-1]["type"] == "session.closed" and events[-1]["finals"] == 2, events[-1]
        assert not of_type(events, "error"), events


async def _take_out(cluster: Cluster, http: aiohttp.ClientSession) -> tuple[Instance, int]:
    """SIGTERM the instance holding the most sessions, wait until it is not ready: it, how many it held."""
    active = await cluster.wait_active(http, SESSIONS)
    victim = max(cluster.instances, key=lambda i: active.get(i.name, -1))
    victim.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while await victim.readiness(http) == 200:
        assert time.monotonic() < deadline, f"{victim.name} still ready 5 s after SIGTERM"
        await asyncio.sleep(0.02)
    return victim, active[victim.name]


async def _read_until_closed(
    stream: Stream, cluster: Cluster, http: aiohttp.ClientSession
) -> tuple[list[dict[str, Any]], dict[str, int | str]]:
    """Every event up to the close, and each instance's readiness asked right after the close arrived.

    Asked after the close, not timed against a poll: a drain that finalizes at once closes its sessions
    within milliseconds of leaving rotation, closer than any polling interval can resolve.
    """
    events: list[dict[str, Any]] = []
    while (event := await stream.receive(timeout=90)) is not None:
        events.append(event)
    return events, {i.name: await i.readiness(http) for i in cluster.instances}


@pytest.mark.timeout(300)
async def test_sigterm_takes_an_instance_out_of_rotation_while_its_sessions_drain(
    make_cluster: StartCluster,
) -> None:
    async with make_cluster(3) as cluster, aiohttp.ClientSession() as http:
        async with StreamerClient(cluster.url, api_key=cluster.api_key) as client:
            streams = await _connect_all(client)
            try:
                # a first sentence completes everywhere, then a second is spoken and left open (no silence)
                await asyncio.gather(*(_send(s, _speech(NAMES[0], tail_s=1.0)) for s in streams))
                await asyncio.gather(*(next_event(s, "transcript.final", timeout=60) for s in streams))
                await asyncio.gather(*(_send(s, _speech(NAMES[1], tail_s=0.0)) for s in streams))

                readers = [asyncio.create_task(_read_until_closed(s, cluster, http)) for s in streams]
                victim, held = await _take_out(cluster, http)
                assert held >= 1
                await cluster.wait_states(http, {victim.name: "DOWN"}, timeout=15)
                rc = await victim.wait_exit(timeout=20)

                # new sessions through the balancer still work, on the instances that remain
                late = await client.connect({"language": "en"})
                await _send(late, _speech(NAMES[2], tail_s=1.0))
                await late.close_session()
                late_events = await events_until_closed(late, timeout=60)

                # the victim has exited, so its sessions are closed; the others are open and idle, their
                # second sentence in flight: end it with silence and close them
                await asyncio.wait(readers, timeout=3)
                for stream, reader in zip(streams, readers, strict=True):
                    if not reader.done():
                        await _send(stream, to_bytes(silence(1.0)))
                        await stream.close_session()
                results = await asyncio.gather(*readers)
            except (AssertionError, TimeoutError) as e:
                raise AssertionError(f"{e!r}\n{cluster.diagnostics()}") from e
            finally:
                for stream in streams:
                    await stream.ws.close()

    assert rc == 0
    codes = [s.close_code for s in streams]
    drained = [i for i, code in enumerate(codes) if code == 1001]
    assert len(drained) == held, (held, codes)
    for i, (events, _) in enumerate(results):
        # every session got its open sentence, exactly once: the drained ones before their close
        finals = of_type(events, "transcript.final")
        assert [f["seq"] for f in finals] == [2], events
        _check_final(finals[0], NAMES[1])
        assert not of_type(events, "error"), events
        closed = events[-1]
        assert closed["type"] == "session.closed" and closed["finals"] == 2, closed
        if i in drained:
            assert closed["reason"] == "server_shutdown", closed
            # out of rotation before its sessions were closed, not after
            assert results[i][1][victim.name] != 200, results[i][1]
    late_finals = of_type(late_events, "transcript.final")
    assert len(late_finals) == 1, late_events
    _check_final(late_finals[0], NAMES[2])
